"""Voice-message transcription for the hotline: Vosk engine, Redis-stream workers, draft sinks.

Layers (imports point down): ``cli`` → ``worker`` → ``jobs``/``sinks``/``engine`` → ``audio``.
"""
