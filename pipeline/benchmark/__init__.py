"""Speed measurement: the studio against the stock diffusers call (`measure`), and real-size
architectures with random weights to measure without a download (`arch`)."""
