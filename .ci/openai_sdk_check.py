"""The official `openai` Python SDK as a client of `hieramas serve --system`.

Usage: python openai_sdk_check.py BASE_URL SYSTEM_MODEL

Checks, with the SDK's own defaults: models.list, chat.completions.create plain and streamed
(the system's answer, its usage and the `hieramas` extension with the trace id), the trace at
GET /v1/traces/{id}, and embeddings.create (which sends encoding_format "base64").
Exits non-zero on the first failure.
"""

import json
import sys
import urllib.request

import openai


def main() -> None:
    base, system = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base, api_key="unused-on-loopback", max_retries=0, timeout=600)

    ids = [m.id for m in client.models.list()]
    print("models:", ids)
    assert system in ids, ids
    assert "local/minilm-l6-v2" in ids, ids

    question = "What is 7 times 8?"
    r = client.chat.completions.create(model=system, messages=[{"role": "user", "content": question}])
    answer = r.choices[0].message.content
    print("plain answer:", repr(answer))
    assert answer and answer.strip(), r
    assert r.choices[0].finish_reason == "stop", r
    assert r.usage.total_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage
    ext = r.model_extra["hieramas"]
    print("extension:", ext)
    assert ext["calls"] >= 2 and ext["trace_id"].startswith("trace-"), ext

    with urllib.request.urlopen(f"{base}/traces/{ext['trace_id']}") as resp:
        trace = json.load(resp)
    calls = trace["reply"]["trace"]["calls"]
    assert len(calls) == ext["calls"], (len(calls), ext)
    assert sum(c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"] for c in calls) == r.usage.total_tokens

    stream = client.chat.completions.create(
        model=system,
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.content:
                pieces.append(delta.content)
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    streamed = "".join(pieces)
    print("streamed answer:", repr(streamed))
    assert streamed.strip(), pieces
    assert finish == "stop", finish
    assert usage is not None and usage.total_tokens > 0, usage

    e = client.embeddings.create(model="local/minilm-l6-v2", input=["hello world", "HieraMAS"])
    dims = [len(d.embedding) for d in e.data]
    print("embedding dims:", dims)
    assert dims == [384, 384], dims
    norm = sum(x * x for x in e.data[0].embedding) ** 0.5
    assert abs(norm - 1.0) < 1e-3, norm  # MiniLM vectors are normalised
    print("openai SDK", openai.__version__, "against hieramas serve --system: ok")


if __name__ == "__main__":
    main()
