"""Shared utilities (ffmpeg / PyAV video I/O in ``ffmpeg``)."""
