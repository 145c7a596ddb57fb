// Package catalogue is the shopping demo's catalogue: 240 products in 10
// categories from 20 brands, the same every time (deterministic names,
// prices and stocks), for the loader (examples/shop/load), the tests and
// bench/shop.
package catalogue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
)

// Product is the body of POST /api/admin/products.
type Product struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Category string  `json:"category"`
	Brand    string  `json:"brand"`
	Price    float64 `json:"price"`
	Stock    int64   `json:"stock"`
}

// Categories and Brands of the demo catalogue.
var (
	Categories = []string{"Kitchen", "Garden", "Books", "Music", "Toys", "Sports", "Office", "Bath", "Tools", "Travel"}
	Brands     = []string{"Acme", "Borealis", "Cobalt", "Dunmore", "Elara", "Fennec", "Gantry", "Halcyon", "Ironwood", "Juniper",
		"Kestrel", "Lumen", "Meridian", "Nimbus", "Orchard", "Pinnacle", "Quarry", "Riverside", "Saffron", "Tundra"}
	items = map[string][]string{
		"Kitchen": {"Kettle", "Chef's Knife", "Cutting Board", "Teapot", "Whisk", "Skillet", "Colander", "Pepper Mill", "Dutch Oven", "Toaster", "Spatula", "Salad Bowl", "Ladle", "Grater", "Measuring Cups", "Mixing Bowl", "Rolling Pin", "Tongs", "Sieve", "Apron", "Oven Mitt", "Trivet", "Bread Bin", "Butter Dish"},
		"Garden":  {"Trowel", "Watering Can", "Pruning Shears", "Rake", "Hose", "Planter", "Seed Tray", "Wheelbarrow", "Gloves", "Kneeler", "Bird Feeder", "Compost Bin", "Sprinkler", "Hoe", "Spade", "Trellis", "Lantern", "Hammock", "Bench", "Shears", "Twine", "Cloche", "Rain Gauge", "Sundial"},
		"Books":   {"Atlas", "Cookbook", "Field Guide", "Novel", "Poetry Collection", "Biography", "Dictionary", "Sketchbook", "Notebook", "Journal", "Almanac", "Travelogue", "Mystery", "Anthology", "Essay Collection", "Textbook", "Picture Book", "Memoir", "Handbook", "Thesaurus", "Encyclopedia", "Primer", "Workbook", "Guidebook"},
		"Music":   {"Ukulele", "Harmonica", "Metronome", "Tuning Fork", "Drumsticks", "Guitar Strings", "Capo", "Music Stand", "Recorder", "Tambourine", "Kazoo", "Maracas", "Triangle", "Headphones", "Songbook", "Pick Set", "Shaker", "Xylophone", "Bongo", "Ocarina", "Harmonium", "Castanets", "Woodblock", "Pitch Pipe"},
		"Toys":    {"Yo-yo", "Kite", "Puzzle", "Marbles", "Spinning Top", "Building Blocks", "Rubber Duck", "Jump Rope", "Frisbee", "Card Game", "Board Game", "Plush Bear", "Toy Train", "Kaleidoscope", "Slinky", "Paper Planes", "Dominoes", "Chess Set", "Bubble Wand", "Stacking Rings", "Sand Bucket", "Puppet", "Pinwheel", "Snow Globe"},
		"Sports":  {"Tennis Balls", "Yoga Mat", "Water Bottle", "Jump Rope Pro", "Dumbbell", "Racket", "Shuttlecocks", "Football", "Basketball", "Swim Goggles", "Cap", "Knee Pads", "Stopwatch", "Whistle", "Climbing Chalk", "Resistance Band", "Foam Roller", "Skipping Rope", "Bike Bell", "Helmet", "Sweatband", "Golf Balls", "Table Tennis Set", "Cones"},
		"Office":  {"Stapler", "Fountain Pen", "Desk Lamp", "Paper Clips", "Sticky Notes", "Ruler", "Scissors", "Tape Dispenser", "Pencil Case", "Highlighters", "Binder", "Letter Opener", "Calculator", "Bookends", "Whiteboard", "Markers", "Envelopes", "Rubber Stamp", "Clipboard", "Desk Organizer", "Index Cards", "Push Pins", "Eraser", "Pencil Sharpener"},
		"Bath":    {"Towel", "Soap Bar", "Toothbrush", "Bath Mat", "Loofah", "Shower Cap", "Soap Dish", "Bath Salts", "Hand Cream", "Nail Brush", "Comb", "Hair Brush", "Razor", "Sponge", "Robe", "Slippers", "Mirror", "Toothpaste", "Floss", "Shampoo", "Conditioner", "Lip Balm", "Bath Bomb", "Washcloth"},
		"Tools":   {"Hammer", "Screwdriver Set", "Tape Measure", "Spirit Level", "Pliers", "Wrench", "Utility Knife", "Hand Saw", "Chisel", "Clamp", "Drill Bits", "Allen Keys", "Flashlight", "Work Gloves", "Toolbox", "Sandpaper", "Stud Finder", "Wire Cutters", "Mallet", "File", "Hex Nuts", "Washers", "Caulk Gun", "Socket Set"},
		"Travel":  {"Backpack", "Passport Wallet", "Neck Pillow", "Luggage Tag", "Packing Cubes", "Travel Adapter", "Toiletry Bag", "Eye Mask", "Earplugs", "Compass", "Map Case", "Water Filter", "Rain Poncho", "Duffel Bag", "Money Belt", "Travel Mug", "Guide Map", "Padlock", "Suitcase", "Tote Bag", "Sun Hat", "Camp Stove", "Sleeping Bag", "Tent"},
	}
)

// PerCategory is how many products each category has.
const PerCategory = 24

// Products returns the catalogue, each product with stock units.
func Products(stock int64) []Product {
	var out []Product
	for ci, cat := range Categories {
		for i, item := range items[cat][:PerCategory] {
			brand := Brands[(ci*7+i*3)%len(Brands)]
			// Prices from 2.50 to about 150, spread deterministically.
			cents := 250 + int64(math.Mod(float64((ci+1)*7919+(i+1)*104729), 14750))
			out = append(out, Product{
				ID:       fmt.Sprintf("p%03d", ci*PerCategory+i+1),
				Name:     brand + " " + item,
				Category: cat,
				Brand:    brand,
				Price:    float64(cents) / 100,
				Stock:    stock,
			})
		}
	}
	return out
}

// Put adds or updates one product of the shop at url (any PoP of it)
// through POST /api/admin/products, and returns what the call changed the
// stock by at the centre.
func Put(client *http.Client, url, token string, p Product) (changedBy int64, err error) {
	body, _ := json.Marshal(p)
	req, err := http.NewRequest("POST", strings.TrimRight(url, "/")+"/api/admin/products", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: %s: %s", p.ID, resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		ChangedBy int64 `json:"changed_by"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, fmt.Errorf("%s: %w: %s", p.ID, err, b)
	}
	return out.ChangedBy, nil
}
