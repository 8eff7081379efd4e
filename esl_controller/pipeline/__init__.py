"""Conversation pipeline: providers (stt, model, tts) and turn handling."""
