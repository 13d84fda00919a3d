"""Speech data: the synthesized default corpus, user datasets, features."""
