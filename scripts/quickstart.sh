#!/usr/bin/env bash
# The main job end to end on the bundled fixtures: build, ingest the sample of real AudioSet files, index the
# music clips, recommend, and evaluate the index; then, where the VGGish weights are installed, embed the bundled
# song and ask an index of it.
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
echo "== recommend --explain: why each is a neighbour (the labels sharing the similarity; query ~ hit seconds)"
"$bin" recommend --index "$out/index" --id xtGmrLOsjHk -k 3 --explain

echo
echo "== evaluate: recall, label precision and latency of the index, on its own clips"
"$bin" evaluate --index "$out/index" --ef 10 --search-k 100

echo
echo "== embed: songs on disk to the same 8-bit VGGish embedding, indexed and asked (needs the model's weights)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}/soundalike"
weights="${SOUNDALIKE_WEIGHTS:-$data_home/vggish-10086976.pth}"
pca="${SOUNDALIKE_PCA:-$data_home/vggish_pca_params.npz}"
if [[ -f "$weights" && -f "$pca" ]]; then
    # The bundled 2-second song in four formats: one clip each, two rows of 0.96 s.
    "$bin" embed fixtures/audio/source.{wav,flac,mp3,ogg} -o "$out/songs.jsonl"
    "$bin" index -q --frames 2 --index "$out/songs" "$out/songs.jsonl"
    "$bin" embed -q fixtures/audio/source.wav | "$bin" recommend --index "$out/songs" --embedding - -k 4
    # A song straight to AudioSet's music clips: the 2-second WAV is one window, the mean of its two rows.
    "$bin" recommend --index "$out/index" --audio fixtures/audio/source.wav -k 3
else
    echo "skipped: no VGGish weights; put vggish-10086976.pth (https://github.com/harritaylor/torchvggish/releases) and vggish_pca_params.npz (https://storage.googleapis.com/audioset/vggish_pca_params.npz) in $data_home (docs/usage.md: soundalike embed)"
fi
