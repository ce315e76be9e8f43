"""The web pages for auditors and program staff, under /ui/ (docs/pages.md).

Page shells (templates/) carry no data and need no token; their script
(static/pages.js) reads the JSON API with the tab's token as a Bearer header,
so every role and program-scope rule is the API's own."""
