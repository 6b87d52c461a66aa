// Package models fetches model and runtime packages from the npm registry into
// a content-addressed cache, verifying the registry's published integrity hash,
// so that Ember can run a model named as "npm:@scope/name@version" without any
// tool but itself.
package models
