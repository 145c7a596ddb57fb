package pop

import (
	"os"
	"testing"

	"github.com/verge-edge/verge/internal/wasm/wasmtest"
)

// TestMain removes the guests the tests built (wasmtest.BuildGo).
func TestMain(m *testing.M) {
	code := m.Run()
	wasmtest.Cleanup()
	os.Exit(code)
}
