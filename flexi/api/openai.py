"""OpenAI-compatible API (/v1/*). Being written; see issue 2."""

from fastapi import APIRouter

router = APIRouter()
