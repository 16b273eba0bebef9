package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// anycableBroadcast is one item of AnyCable's HTTP broadcast: data is a
// string holding the JSON the subscribers receive as "message". A remote
// command (command "disconnect") has a payload instead.
type anycableBroadcast struct {
	Stream  string          `json:"stream"`
	Data    *string         `json:"data"`
	Command string          `json:"command"`
	Payload json.RawMessage `json:"payload"`
}

// apiBroadcast is POST /_broadcast, AnyCable's broadcast endpoint, so that
// a Rails app's ActionCable.server.broadcast through AnyCable's HTTP
// adapter works unchanged: {"stream","data"} or an array of them, or the
// remote command {"command":"disconnect","payload":{"identifier"}}, which
// disconnects the connections of that identity. It answers 201 with no
// body, as anycable-go does, and the API's errors otherwise.
func (s *api) apiBroadcast(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, "too_large", "request body over "+strconv.Itoa(maxAPIBody)+" bytes")
		return
	}
	var items []anycableBroadcast
	if strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
		err = json.Unmarshal(body, &items)
	} else {
		var one anycableBroadcast
		err = json.Unmarshal(body, &one)
		items = []anycableBroadcast{one}
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_request", `body must be {"stream", "data": "<JSON as a string>"}, an array of them, or {"command": "disconnect", "payload": {...}}: `+err.Error())
		return
	}
	var batch []apiPub
	for i, it := range items {
		if it.Command != "" {
			if !s.remoteCommand(w, i, it) {
				return
			}
			continue
		}
		if it.Data == nil {
			apiError(w, http.StatusBadRequest, "bad_data", "item "+strconv.Itoa(i)+": data must be a string holding JSON")
			return
		}
		data := json.RawMessage(*it.Data)
		if !json.Valid(data) {
			// Not JSON: the subscribers get the string itself.
			data, _ = json.Marshal(*it.Data)
		}
		batch = append(batch, apiPub{Stream: it.Stream, Data: data})
	}
	if len(batch) == 0 {
		w.WriteHeader(http.StatusCreated)
		return
	}
	if s.node.Draining() && !s.node.HistoryOutlivesNode() {
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "draining", "this node is shutting down and keeps no history past it: retry on the node that replaces it")
		return
	}
	s.publishItems(w, r, batch, func([]apiPubResult) { w.WriteHeader(http.StatusCreated) })
}

// remoteCommand runs an AnyCable remote command; it reports false after
// answering an error.
func (s *api) remoteCommand(w http.ResponseWriter, i int, it anycableBroadcast) bool {
	if it.Command != "disconnect" {
		apiError(w, http.StatusBadRequest, "bad_command", "item "+strconv.Itoa(i)+": unknown command "+strconv.Quote(it.Command)+" (known: disconnect)")
		return false
	}
	var p struct {
		Identifier string `json:"identifier"`
	}
	if err := json.Unmarshal(it.Payload, &p); err != nil || p.Identifier == "" {
		apiError(w, http.StatusBadRequest, "bad_command", "item "+strconv.Itoa(i)+`: disconnect needs {"payload": {"identifier": "..."}}`)
		return false
	}
	s.node.DisconnectUser(p.Identifier)
	return true
}
