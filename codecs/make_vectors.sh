#!/bin/sh
# Regenerates every reference vector in this folder (SoX v14.4.2, python3 + numpy). Run from this folder.
# -D disables SoX's default dither: without it SoX adds TPDF noise whenever it reduces the bit depth
# (16-bit -> 8-bit G.711, 32-bit internal -> 16-bit output), and the files would not be reproducible.
set -eu
RAW="-t raw -e signed-integer -b 16 -r 8000 -c 1"

# 1 s 1 kHz sine at -6 dBFS and a 1 s "speech-like" exponential chirp 300->3400 Hz with 4 Hz tremolo.
sox -D -n $RAW sine_1k.raw synth 1 sine 1000 vol 0.5
sox -D -n $RAW chirp.raw synth 1 sine 300:3400 tremolo 4 80 vol 0.8

# Every 16-bit value once, -32768..32767 ascending (input only, not stored: 128 KiB).
python3 -c "import numpy as np; np.arange(-32768, 32768, dtype='<i2').tofile('ramp.raw')"

for name in sine_1k chirp ramp; do
    sox -D $RAW $name.raw -t raw -e mu-law -b 8 -r 8000 -c 1 $name.ul
    sox -D $RAW $name.raw -t raw -e a-law -b 8 -r 8000 -c 1 $name.al
done
rm ramp.raw

# Every G.711 code 0..255 once, decoded by SoX to s16le.
python3 -c "import sys; sys.stdout.buffer.write(bytes(range(256)))" > codes.bin
sox -D -t raw -e mu-law -b 8 -r 8000 -c 1 codes.bin $RAW codes_ulaw_decoded.raw
sox -D -t raw -e a-law -b 8 -r 8000 -c 1 codes.bin $RAW codes_alaw_decoded.raw

# DTMF: 100 ms, both tones at amplitude 0.35 (about -9 dBFS peak each, ~-9 dBm0 per tone in G.711 terms).
dtmf() {  # file-suffix low-Hz high-Hz
    sox -D -n -r 8000 -c 1 -b 16 -e signed-integer dtmf_$1.wav synth 0.1 sine $2 sine $3 remix - vol 0.7
}
dtmf 1 697 1209; dtmf 2 697 1336; dtmf 3 697 1477; dtmf A 697 1633
dtmf 4 770 1209; dtmf 5 770 1336; dtmf 6 770 1477; dtmf B 770 1633
dtmf 7 852 1209; dtmf 8 852 1336; dtmf 9 852 1477; dtmf C 852 1633
dtmf star 941 1209; dtmf 0 941 1336; dtmf hash 941 1477; dtmf D 941 1633
