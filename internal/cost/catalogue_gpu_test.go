package cost

import "testing"

// A GPU the server's inventory finds (--gpus auto) must be deployable out of
// the box, and deploy refuses a hardware class without a hosted offer: the
// default catalogue prices the classes of the common datacentre GPUs. Found
// on a real H200 machine, whose class had no offer.
func TestDefaultCatalogueHostsCommonGPUs(t *testing.T) {
	c, err := DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	for _, hw := range []string{"t4-16gb", "l4-24gb", "a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb"} {
		hosted := 0
		for _, o := range c.ForHardware(hw) {
			if o.Kind == "hosted" && o.PerSecond() > 0 && o.GPUsPerUnit == 1 {
				hosted++
			}
		}
		if hosted != 1 {
			t.Errorf("%s: %d hosted offers with a price per GPU, want 1", hw, hosted)
		}
	}
}
