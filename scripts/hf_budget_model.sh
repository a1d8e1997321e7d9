#!/usr/bin/env bash
# The imported model of docs/budget.md's Pareto: a Hugging Face Qwen3ForCausalLM directory
# (128 wide, 4 layers, 4 heads / 2 KV heads of 32, FFN 384, random init, the 300-token byte-level
# BPE of tests/hf), imported and trained here for 400 steps on the first 3 MB of the Austen
# training split (no pretrained model can be downloaded here), exported as an MXINT8 anchor.
#   bash scripts/hf_budget_model.sh OUT_DIR      (~13 min on 2 cores; then:)
#   MODELS="hf_qwen3:OUT_DIR/qt8.safetensors:mxint8,mxint6,mxint5,mxint4" bash scripts/budget_pareto.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release/src/cli/mfqat}
OUT=$1
mkdir -p "$OUT"
/usr/bin/python3 - "$OUT/hf" <<'PY'
import sys
sys.path.insert(0, "tests/hf")
import hf_models as h
h.BASE.update({"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4})
h.MODELS["qwen3"] = (h.MODELS["qwen3"][0], dict(h.MODELS["qwen3"][1], head_dim=32, num_key_value_heads=2), "f32", False)
h.write_model("qwen3", sys.argv[1])
h.write_tokenizer(sys.argv[1], 300)
PY
head -c 3000000 data/austen/train.txt > "$OUT/train3m.txt"
"$B" --threads 2 train --init "$OUT/hf" --text "$OUT/train3m.txt" --steps 400 --seq 128 --batch 16 --train-sequences 0 \
  --lr 3e-3 --warmup 20 -o "$OUT/qt.safetensors"
"$B" export "$OUT/qt.safetensors" --anchor mxint8 -o "$OUT/qt8.safetensors"
