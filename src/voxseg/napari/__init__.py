"""voxseg's napari plugin: the Train widget and the demo sample data (Qt is imported only here)."""
