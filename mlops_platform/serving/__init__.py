"""The model server: KServe V1/V2 protocols, canary split, metrics and inference log."""
