"""The data stage: a source's documents streamed once (source, stream, textfiles), frozen with a character
vocabulary (vocab) into token shards and a manifest (shards, prepare), and read back memory-mapped by the
trainer (loader). Nothing is imported here, so the loader does not bring pyarrow or datasets with it."""
