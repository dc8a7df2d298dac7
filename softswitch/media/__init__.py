"""Media plane: RTP/RTCP, ports, DTMF, tones, prompts, recording and the media engine."""
