"""The Hugging Face `transformers` reference the trainer is checked and benchmarked against.

    python reference.py logits  MODEL_DIR IN.json OUT.json   # logits of token id rows, + tokenizer/chat checks
    python reference.py bench-train  MODEL_DIR BATCH SEQ STEPS WARMUP THREADS
    python reference.py bench-decode MODEL_DIR BATCH PROMPT_LEN NEW_TOKENS THREADS

Runs on CPU in float32 unless told otherwise; never downloads anything.
"""
import json
import os
import sys
import time


def logits(model_dir, inp, out):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    req = json.load(open(inp))
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids = torch.tensor(req["ids"], dtype=torch.long)
    with torch.no_grad():
        full = model(ids).logits
    tok = AutoTokenizer.from_pretrained(model_dir)
    res = {
        "logits": full.flatten().tolist(),
        "shape": list(full.shape),
        "encoded": tok(req["text"])["input_ids"],
        "chat": tok.apply_chat_template(req["messages"], tokenize=False, add_generation_prompt=True),
        "inv_freq": model.model.rotary_emb.inv_freq.tolist(),
    }
    json.dump(res, open(out, "w"))


def _load(model_dir, threads):
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(threads)
    return torch, LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="sdpa")


def _peak_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ids(torch, vocab, batch, seq, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g)


def bench_train(model_dir, batch, seq, steps, warmup, threads):
    """PyTorch eager: forward, loss, backward, torch.optim.AdamW — what a Python trainer does."""
    torch, model = _load(model_dir, threads)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ids = _ids(torch, model.config.vocab_size, batch, seq, 1)

    def step():
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        last = step()
    secs = time.perf_counter() - t
    print(json.dumps({"case": "train", "impl": "PyTorch eager (transformers)", "tokens_per_second": batch * seq * steps / secs,
                      "peak_rss_mib": _peak_mib(), "final_loss": last}))


def bench_decode(model_dir, batch, seq, new_tokens, threads):
    """transformers `generate`, greedy, KV cache, exactly `new_tokens` per sequence."""
    torch, model = _load(model_dir, threads)
    model.eval()
    ids = _ids(torch, model.config.vocab_size, batch, seq, 2)
    kw = dict(do_sample=False, pad_token_id=0, use_cache=True)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        secs = time.perf_counter() - t
    produced = (out.shape[1] - seq) * batch
    print(json.dumps({"case": f"decode b{batch}", "impl": "transformers generate", "tokens_per_second": produced / secs,
                      "peak_rss_mib": _peak_mib()}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "logits":
        logits(*sys.argv[2:5])
    elif cmd == "bench-train":
        d, b, s_, n, w, th = sys.argv[2:8]
        bench_train(d, int(b), int(s_), int(n), int(w), int(th))
    elif cmd == "bench-decode":
        d, b, s_, n, th = sys.argv[2:7]
        bench_decode(d, int(b), int(s_), int(n), int(th))
    else:
        sys.exit(f"unknown command {cmd}")
