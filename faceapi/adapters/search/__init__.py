"""In-process vector search over a collection's stored embeddings."""
