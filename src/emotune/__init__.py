"""emotune: visual emotion recognition by transfer learning."""
__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy, so `import emotune` stays cheap for the CLI and training code
    if name in ("Recognizer", "FaceResult"):
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'emotune' has no attribute {name!r}")


__all__ = ["FaceResult", "Recognizer", "__version__"]
