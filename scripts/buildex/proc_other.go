//go:build !unix

package main

import "os/exec"

// killGroupOnCancel keeps exec's default (kill the shell only); WaitDelay in
// run bounds the wait for any process it left behind.
func killGroupOnCancel(cmd *exec.Cmd) {}
