"""The scoring budget: candidate-scoring requests (classify, entail, VQA mode all) are priced
before they are queued, and those over ``max_score_tokens`` get a 422 that says how to fit."""

from __future__ import annotations

import re

import httpx
import pytest

from ofa.serve.cost import ROW_TOKENS, ScoringBudget
from ofa.serve.errors import ApiError


def _refusal(budget: ScoringBudget, task: str, options: dict, fields: dict) -> str:
    with pytest.raises(ApiError) as refused:
        budget.check(task, options, fields)
    assert refused.value.status == 422
    return refused.value.detail


def test_the_price_is_rows_plus_tokens(demo_model):
    tok = demo_model.tokenizer
    classes = ("red", "blue circle")
    tokens = sum(len(tok.encode(" " + c, add_bos_eos=False)) for c in classes)
    cost = 2 * (ROW_TOKENS + 1) + tokens
    exact = ScoringBudget(tok, cost)
    exact.check("classify", {"classes": classes}, {})  # at the limit: accepted
    detail = _refusal(ScoringBudget(tok, cost - 1), "classify", {"classes": classes}, {})
    assert f"costs {cost:,} scoring tokens" in detail and f"limit of {cost - 1:,}" in detail
    # VQA: every answer row also holds the question (the decoder prefix of a fine-tune)
    question = "what color is it?"
    q = len(tok.encode(" " + question, add_bos_eos=False))
    options = {"mode": "all", "answers": classes}
    detail = _refusal(ScoringBudget(tok, 1, model_task="vqa"), "vqa", options,
                      {"question": question})
    assert f"costs {2 * (ROW_TOKENS + q + 1) + tokens:,}" in detail
    assert f"each costs {ROW_TOKENS + 1} + its own tokens + {q} for the question" in detail
    assert detail.endswith("splitting the list over several requests, or a shorter question")
    # a pre-trained model answers zero-shot, without the question in the decoder
    detail = _refusal(ScoringBudget(tok, 1, model_task="caption"), "vqa", options,
                      {"question": question})
    assert f"costs {2 * (ROW_TOKENS + 1) + tokens:,}" in detail
    assert detail.endswith("splitting the list over several requests")  # the question: free


def test_without_a_tokenizer_utf8_bytes_bound_the_tokens():
    budget = ScoringBudget(None, 1)  # a model without a tokenizer (the OpenAPI placeholder)
    detail = _refusal(budget, "classify", {"classes": ("ab", "\u00e9")}, {})
    # " ab" is 3 bytes, " é" 3: byte-level BPE makes at most one token per byte
    assert f"costs {2 * (ROW_TOKENS + 1) + 6:,}" in detail


def test_only_scoring_requests_are_priced(demo_model):
    budget = ScoringBudget(demo_model.tokenizer, 1, defaults={"vqa": {"answers": ["red"]}})
    assert budget.applies("classify", {"classes": ("a",)})
    assert budget.applies("vqa", {"mode": "all", "answers": None})
    assert budget.applies("entail", {})  # its three answers are scored too
    detail = _refusal(budget, "entail", {}, {"hypothesis": "a cat", "premise": None})
    assert detail.startswith("candidates: scoring 3 candidates costs ")
    assert detail.endswith("send a shorter hypothesis")
    for task, options in (("vqa", {"mode": "beam", "answers": ("a",) * 2000}),
                          ("vqa", {"mode": None}), ("caption", {"decoding": {}}),
                          ("generate", {"decoding": {}, "with_image": False})):
        assert not budget.applies(task, options)
        budget.check(task, options, {"question": "q"})  # never refused
    # "all" without answers and without a server default: the model refuses it, not the price
    ScoringBudget(None, 1).check("vqa", {"mode": "all", "answers": None}, {"question": "q"})


def test_over_budget_requests_are_refused_before_queuing(serve, gated, png_b64, png_bytes):
    gated.gate.set()  # requests that get through run at once
    with serve(gated, max_score_tokens=300) as live:
        url = live.url
        many = [f"class {i}" for i in range(10)]  # 10 rows of 65+ tokens: over 300
        r = httpx.post(f"{url}/v1/classify", json={"image": png_b64, "classes": many})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("classes: scoring 10 classes costs ")
        assert "limit of 300 (--max-score-tokens)" in detail
        assert "each costs 65 + its own tokens (" in detail
        assert "so about 4 like these fit in one request): send fewer or shorter classes" \
            in detail
        r = httpx.post(f"{url}/v1/classify", files={"image": ("d.png", png_bytes)},
                       data={"classes": many})
        assert r.status_code == 422 and r.json()["detail"] == detail  # multipart alike
        r = httpx.post(f"{url}/v1/vqa", json={"image": png_b64, "question": "what is it?",
                                              "mode": "all", "answers": many})
        assert r.status_code == 422 and r.json()["detail"].startswith("answers: scoring 10 ")
        # the question is in every row unless the model answers zero-shot (no prefix)
        assert re.search(r"each costs 65 \+ its own tokens( \+ \d+ for the question)? \(",
                         r.json()["detail"])
        # the server's own answer list (19 for the demo model) is priced too
        r = httpx.post(f"{url}/v1/vqa", json={"image": png_b64, "question": "what is it?",
                                              "mode": "all"})
        assert r.status_code == 422
        assert "send your own shorter list of answers (the server's default has 19)" \
            in r.json()["detail"]
        assert gated.calls == []  # none of them reached the model
        # within the budget: served
        r = httpx.post(f"{url}/v1/classify", json={"image": png_b64,
                                                   "classes": ["triangle", "square"]})
        assert r.status_code == 200, r.text
        r = httpx.post(f"{url}/v1/vqa", json={"image": png_b64, "question": "what is it?",
                                              "mode": "beam", "answers": many})
        assert r.status_code == 200, r.text  # beam search within answers: not priced
        assert len(gated.calls) == 2


def test_the_default_budget_serves_the_demo_answers_in_mode_all(shared_server, png_b64):
    r = httpx.post(f"{shared_server.url}/v1/vqa", timeout=60,
                   json={"image": png_b64, "question": "what color is the triangle?",
                         "mode": "all"})
    assert r.status_code == 200, r.text
    assert len(r.json()["scores"]) == 19
