"""emotune: visual emotion recognition by transfer learning."""
__version__ = "0.1.0"
