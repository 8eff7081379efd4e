"""Media path: codecs, the mod_audio_fork codec and server, VAD, endpointing, recording."""
