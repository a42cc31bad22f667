#!/usr/bin/env bash
# The main job end to end on the bundled fixtures: build, ingest the sample of real AudioSet files, index the
# music clips, recommend, and evaluate the index.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/soundalike"
out=${OUT:-target/quickstart}
mkdir -p "$out"

echo "== ingest: the fixtures' TFRecords to music clips as JSON Lines"
"$bin" ingest fixtures/audioset_v1_embeddings -o "$out/clips.jsonl"
echo "wrote $out/clips.jsonl: $(wc -l < "$out/clips.jsonl") clips"
echo "first clip, abridged:"
head -n 1 "$out/clips.jsonl" | cut -c 1-160

echo
echo "== index: a random-projection forest of the clips (mean of de-quantized frames, angular)"
"$bin" index --index "$out/index" "$out/clips.jsonl"

echo
echo "== recommend: the clips that sound most like xtGmrLOsjHk (Music, Opera), the original notebook's query"
"$bin" recommend --index "$out/index" --id xtGmrLOsjHk

echo
echo "== evaluate: recall, label precision and latency of the index, on its own clips"
"$bin" evaluate --index "$out/index" --ef 10 --search-k 100
