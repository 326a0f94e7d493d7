"""The Hugging Face `transformers` reference the trainer is checked and benchmarked against.

    python reference.py logits  MODEL_DIR IN.json OUT.json   # logits of token id rows, + tokenizer/chat checks
    python reference.py bench-train  ...                     # see trainer/benches
    python reference.py bench-decode ...

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


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "logits":
        logits(*sys.argv[2:5])
    else:
        sys.exit(f"unknown command {cmd}")
