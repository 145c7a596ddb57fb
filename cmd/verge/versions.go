package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/verge-edge/verge/internal/deploy"
)

func runVersions(args []string, stdout, stderr io.Writer) error {
	op, pos, err := appCommand("versions", "usage: verge versions [--net DIR | --to URL --token T] APP\n\nThe app's versions, oldest first; * marks the current one.", 0, args, stderr)
	if err != nil {
		return err
	}
	var rec deploy.AppRecord
	if err := op.getJSON("/v1/apps/"+url.PathEscape(pos[0])+"/versions", &rec); err != nil {
		return err
	}
	for _, v := range rec.Versions {
		mark := " "
		if v.ID == rec.Current {
			mark = "*"
		}
		line := fmt.Sprintf("%s %s  uploaded %s  %d bytes", mark, v.ID, v.Uploaded.Format("2006-01-02 15:04:05"), v.Bytes)
		if !v.Deployed.IsZero() {
			line += "  deployed " + v.Deployed.Format("2006-01-02 15:04:05")
		}
		if v.Failed != "" {
			line += "  rolled back: " + v.Failed
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}
