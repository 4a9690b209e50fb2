"""Python client of the audioq audio-processing API.

from audioq_client import Client

with Client("https://audioq.example.com", "aq_...") as aq:
    asset = aq.upload("song.wav")
    job = aq.wait(aq.submit("separate/2stem", asset.asset_id).job_id)
    for name, link in output_links(job.result):
        aq.download(link, name)
"""

from audioq_client.client import Client, output_links
from audioq_client.errors import AudioqError
from audioq_client.models import Account, Asset, CallbackStatus, Job, JobUpdate, Page, RotatedSecret, Task
from audioq_client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "Account",
    "Asset",
    "AudioqError",
    "CallbackStatus",
    "Client",
    "Job",
    "JobUpdate",
    "Page",
    "RotatedSecret",
    "Task",
    "WebhookVerificationError",
    "output_links",
    "verify_webhook",
]
