"""Papers in: sources (files, feeds, listing) -> validation -> tagging -> store (one
transaction per file, bulk, de-duplicated); `arxiv` fetches a month from the arXiv API;
`links` says where a paper links to."""
