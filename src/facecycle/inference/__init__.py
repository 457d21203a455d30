"""Loading generators for inference and translating images, folders and videos."""
