"""Course documents for retrieval (issue 13): loaders (files → structured text, in a sandboxed process),
chunking by structure, lexical and dense indexes with rank fusion, and the retrieval step the generation
service calls (`ChatPrompt.augment`)."""
