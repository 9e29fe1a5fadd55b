// Socketgram widget: written in the next step.
