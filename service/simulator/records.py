"""The JSON shapes the simulator answers with: result records and inspection views."""

from __future__ import annotations

import time
from typing import Any

from service.pixverse import vocab
from service.simulator.state import SUCCEEDED, Job, Upload


def timestamp(seconds: float) -> str:
    """PixVerse's ``create_time`` format (the example shows ``2026-09-01 10:00:00``; UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def dimensions(quality: str, aspect_ratio: str, *, long_edge: bool = False) -> tuple[int, int]:
    """Output width and height. The quality is the short side (720p 21:9 -> 1680x720), or with
    ``long_edge`` the long side as ComfyUI maps it (540p 16:9 -> 1024x576): PixVerse does not
    say which (``SimulatorConfig.quality_edge``). An unreadable ratio ("auto") counts as 16:9."""
    if quality not in vocab.QUALITIES:
        quality = "540p"
    w, _, h = aspect_ratio.partition(":")
    try:
        rw, rh = int(w), int(h)
    except ValueError:
        rw, rh = 16, 9
    if rw <= 0 or rh <= 0:
        rw, rh = 16, 9
    if long_edge:
        long = vocab.LONG_EDGE_PIXELS[quality]
        if rw >= rh:
            return long, _even(long * rh / rw)
        return _even(long * rw / rh), long
    short = vocab.quality_pixels(quality)
    if rw >= rh:
        return _even(short * rw / rh), short
    return short, _even(short * rh / rw)


def _even(value: float) -> int:
    return int(round(value / 2) * 2)


def video_record(job: Job, *, long_edge: bool = False) -> dict[str, Any]:
    """``GET /video/result/{id}`` (REFERENCE.md 5.15)."""
    width, height = dimensions(job.quality, job.aspect_ratio, long_edge=long_edge)
    succeeded = job.status == SUCCEEDED
    return {
        "id": job.id,
        "status": job.status,
        "url": job.result_url,
        "prompt": str(job.payload.get("prompt") or job.payload.get("restyle_prompt") or ""),
        "negative_prompt": str(job.payload.get("negative_prompt") or ""),
        "seed": job.seed,
        "style": str(job.payload.get("style") or ""),
        "resolution_ratio": vocab.quality_pixels(job.quality),
        "outputWidth": width,
        "outputHeight": height,
        "size": job.size_bytes if succeeded and job.size_bytes is not None else 0,
        "has_audio": job.has_audio if succeeded else False,
        "credits": job.net_credits,
        "cover_url": "",
        "customer_paths": {},
        "create_time": timestamp(job.created_at),
        "modify_time": timestamp(job.modified_at),
    }


def image_record(job: Job) -> dict[str, Any]:
    """``GET /image/result/{image_id}`` (REFERENCE.md 5.19)."""
    img_ids = [int(i) for i in job.payload.get("img_ids") or ()]
    return {
        "image_id": job.id,
        "status": job.status,
        "url": job.result_url,
        "prompt": "",
        "prompt_translate": "",
        "seed": job.seed,
        "template_id": job.payload.get("template_id"),
        "outputWidth": 160,  # assets/sample.png
        "outputHeight": 90,
        "credits": job.net_credits,
        "create_time": timestamp(job.created_at),
        "modify_time": timestamp(job.modified_at),
        "customer_paths": {
            "ext_info": "", "agent_info": "", "cameo_id_list": [], "duration_type": "",
            "fusion_id_list": [], "model_evaluator": "", "customer_img_paths": [],
            "gen_img_req_img_ids": img_ids,
        },
    }


def job_view(job: Job, *, detail: bool = False) -> dict[str, Any]:
    """A job as the inspection surface shows it."""
    view: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "result_kind": job.result_kind,
        "status": job.status,
        "api_key": job.api_key,
        "trace_id": job.trace_id,
        "credits": job.credits,
        "refunded": job.refunded,
        "status_calls": job.status_calls,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "url": job.result_url,
        "size_bytes": job.size_bytes,
        "forced": job.forced,
    }
    if detail:
        # body: the request as received, fields the simulator ignores included.
        view.update(payload=job.payload, body=job.body, callback_url=job.callback_url,
                    planned_status=job.planned_status,
                    duration=job.duration, quality=job.quality, has_audio=job.has_audio,
                    base_url=job.base_url, charged_monthly=job.charged_monthly,
                    charged_package=job.charged_package)
    return view


def upload_view(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id, "api_key": upload.api_key, "media_type": upload.media_type,
        "mime": upload.mime, "filename": upload.filename, "size": upload.size,
        "sha256": upload.sha256, "source_url": upload.source_url,
    }
