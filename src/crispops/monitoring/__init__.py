"""The recursive cycle's watch: the prediction log and its labels (store), and what
`crispops monitor` makes of them."""
