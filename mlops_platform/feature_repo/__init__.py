"""The Feast repository, generated from the dataset spec."""
