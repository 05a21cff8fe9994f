"""The dialogue: the flow set compiled onto `transitions`, one event's turn, inputs, the picker, replies."""
