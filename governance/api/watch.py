"""The live watch's intake: the hospital's LLM gateway posts samples of real interactions with a token scoped to
one deployment (scope ``watch``); each is de-identified before anything is stored."""

from __future__ import annotations

from flask import g
from pydantic import Field

from ..db import get_session
from ..models import Deployment, utcnow
from ..operations.watch import MAX_BATCH, receive
from ..schemas import Strict, Text
from . import schemas as out
from .common import ApiError, parse, respond
from .openapi import operation


class InteractionIn(Strict):
    prompt: Text(20_000, required=True) = Field(description="What the user asked (identifiers are removed on "
                                                            "receipt, before anything is stored).")
    answer: Text(20_000, required=True) = Field(description="What the deployed model answered.")
    timestamp: Text(40) = Field(default="", description="When it was asked (ISO 8601); kept to the hour.")


class InteractionsIn(Strict):
    interactions: list[InteractionIn] = Field(min_length=1, max_length=MAX_BATCH)


@operation("post", "/deployments/<id:deployment_id>/interactions",
           summary="Post sampled interactions for the live watch (a watch token of this deployment)",
           body=InteractionsIn, response=out.InteractionsReceived, status=202, errors=(400, 401, 403, 404, 409, 413))
def post_interactions(deployment_id: int):
    token = g.api_token
    if token.scope != "watch" or token.deployment_id != deployment_id:
        raise ApiError(403, f"posting interactions needs a watch token of deployment {deployment_id} "
                            f"(govern watch token {deployment_id})")
    deployment = get_session().get(Deployment, deployment_id)
    if deployment is None:
        raise ApiError(404, f"no deployment {deployment_id}")
    payload = parse(InteractionsIn)
    result = receive(get_session(), deployment, [i.model_dump() for i in payload.interactions], token=token,
                     now=utcnow())
    return respond(out.InteractionsReceived, result, 202)
