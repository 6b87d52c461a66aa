package api

import "time"

// Secret is a stored secret as the server lists it: its name and times,
// never its value.
type Secret struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SecretPutResult answers PUT /v1/secrets/{name}.
type SecretPutResult struct {
	Secret  Secret `json:"secret"`
	Created bool   `json:"created"`
}
