"""torchvggish's whole path for one WAV, as a user of it runs it: read the file (soundfile, 16-bit / 32768 as
the reference), `waveform_to_examples` (resampy's kaiser_best to 16 kHz, log-mel), the network on the CPU in
batches of 32 under no_grad. Prints the seconds each part took to stderr.

usage: python torchvggish_time.py SONG.wav

The model is torchvggish's own (`_vgg`), with its initial weights: the release weights cannot be downloaded on
the build machines, and the arithmetic (and its cost) does not depend on the values.
"""

import sys
import time

started = time.perf_counter()
import soundfile  # noqa: E402
import torch  # noqa: E402
from torchvggish import torchvggish, vggish_input  # noqa: E402

imported = time.perf_counter()
model = torchvggish._vgg(postprocess=False).eval()
built = time.perf_counter()
data, rate = soundfile.read(sys.argv[1], dtype="int16")
examples = vggish_input.waveform_to_examples(data / 32768.0, rate)
front = time.perf_counter()
with torch.no_grad():
    outputs = [model(batch) for batch in torch.split(examples, 32)]
done = time.perf_counter()
rows = sum(o.shape[0] for o in outputs)
print(
    f"import {imported - started:.2f} s, model {built - imported:.2f} s, front end {front - built:.2f} s, "
    f"network {done - front:.2f} s for {rows} examples ({1000 * (done - front) / rows:.1f} ms each)",
    file=sys.stderr,
)
