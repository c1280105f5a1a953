"""The shipped weights, their conditional priors and model cards: package data of cdtcodec, installed as the
package `cdtcodec_weights` (setup.py maps it onto this folder). Code finds the folder through
`cdtcodec.weights.WEIGHTS_DIR`."""
