//go:build tools

// Package tools pins stripe-mock, Stripe's API emulator (OpenAPI spec and fixtures embedded),
// which the billing integration tests and the local demo talk to.
package tools

import _ "github.com/stripe/stripe-mock"
