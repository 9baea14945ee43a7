"""unmix job: remove the music from one voice note or video with Demucs."""
