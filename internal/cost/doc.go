// Package cost answers "serverless or always-on, for this model, at this
// traffic?" with figures: a price catalogue, two engines that turn traffic
// into instance-seconds by state (closed forms for Poisson arrivals, and a
// discrete-event simulation that drives Ember's real autoscaler decider), the
// pricing of those seconds under each offer's billing rules, crossovers, and
// the seed's decision tree as advice. It is pure: no I/O beyond the readers
// and byte slices handed in, and no clock.
package cost
