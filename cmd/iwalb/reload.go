package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
)

// askReload asks the iwalb that runs the file at path to load it again,
// through the admin API that the file enables, and prints the outcome:
// the generation and hash now running, or why the file was refused (the
// running configuration then keeps serving).
func askReload(path string, stdout, stderr io.Writer) int {
	addr, err := config.AdminListen(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
	if addr == "" {
		fmt.Fprintf(stderr, "%s: no admin listener (admin.listen), so iwalb reload cannot reach the process: send it SIGHUP (systemctl reload iwalb)\n", path)
		return exitFailed
	}
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Post("http://"+addr+"/reload", "application/json", nil)
	if err != nil {
		fmt.Fprintf(stderr, "iwalb reload: %v (is iwalb running with %s?)\n", err, path)
		return exitFailed
	}
	defer resp.Body.Close()
	var out adminReload
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		fmt.Fprintf(stderr, "iwalb reload: %s answered %s with no outcome: %v\n", addr, resp.Status, err)
		return exitFailed
	}
	if out.Error != "" {
		fmt.Fprintf(stderr, "%s\niwalb reload: refused; generation %d (config %s) keeps serving\n", out.Error, out.Generation, out.Hash)
		return exitFailed
	}
	fmt.Fprintf(stdout, "reloaded: generation %d, config %s\n", out.Generation, out.Hash)
	return exitOK
}
