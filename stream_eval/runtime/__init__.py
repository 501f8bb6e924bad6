"""The Kafka and Faust runtime the stages run on: how messages come in (``bulk_drain``,
``batches``), how a stage's steps are composed with backpressure (``steps``), how results
are produced (``produce``) and offsets committed (``commit_soon``), group membership and
shutdown (``membership``, ``shutdown``), what stream-eval changes in Faust
(``faust_fixes``), topics, lag, the stall watch and the local broker. Nothing here knows
what a trace is."""
