"""Human review: the queue, labels, the review app."""
