package ocrtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// EvalCase is one image of the OCR evaluation set: the reference text (one
// line per rendered line) and the encoded image.
type EvalCase struct {
	Name     string // category-noise-index, e.g. "english-noisy-03"
	Category string // english, numbers, chinese or mixed
	Noisy    bool
	Lines    []string
	Image    []byte
	Args     []string // the convert arguments that drew it (output path last)
}

// EvalCategories are the evaluation set's categories, in report order.
var EvalCategories = []string{"english", "numbers", "chinese", "mixed"}

// EvalSet renders perClass images for each category, clean and noisy
// (8 × perClass in all), from seed: the same seed gives the same texts,
// fonts, sizes and noise (ImageMagick's -seed), so runs compare. Nobody
// tuned the OCR on these images: the texts are random sentences, every line
// ends in punctuation and most contain ", ", the two things Ember's OCR was
// seen to drop.
//
// Clean: black text on white, PNG. Noisy: grey text on an off-white page,
// rotated up to ±2°, Gaussian noise, a slight blur, JPEG quality 50–70.
func EvalSet(t testing.TB, seed uint64, perClass int) []EvalCase {
	t.Helper()
	tool := convertTool(t)
	cjk := CJKFont(t)
	latin := existing("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
		"/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
		"/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
		"/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf")
	if len(latin) == 0 {
		latin = []string{cjk}
	}
	r := rand.New(rand.NewPCG(seed, 0x0c7))
	dir := t.TempDir()
	var cases []EvalCase
	for _, cat := range EvalCategories {
		for _, noisy := range []bool{false, true} {
			for i := 0; i < perClass; i++ {
				nLines := 1 + r.IntN(3)
				lines := make([]string, nLines)
				for k := range lines {
					lines[k] = sentence(r, cat)
				}
				font := latin[r.IntN(len(latin))]
				if cat == "chinese" || cat == "mixed" {
					font = cjk
				}
				name := fmt.Sprintf("%s-%s-%02d", cat, map[bool]string{false: "clean", true: "noisy"}[noisy], i)
				ext := "png"
				args := []string{"-background", "white", "-fill", "black", "-font", font,
					"-pointsize", strconv.Itoa(20 + r.IntN(17))}
				if noisy {
					grey := 40 + r.IntN(50)
					bg := 225 + r.IntN(25)
					args = []string{"-background", fmt.Sprintf("rgb(%d,%d,%d)", bg, bg, bg-5),
						"-fill", fmt.Sprintf("rgb(%d,%d,%d)", grey, grey, grey), "-font", font,
						"-pointsize", strconv.Itoa(20 + r.IntN(17))}
				}
				// label: expands %-escapes and a leading @ reads a file; the
				// texts use neither.
				args = append(args, "label:"+strings.Join(lines, "\n"),
					"-bordercolor", args[1], "-border", fmt.Sprintf("%dx%d", 12+r.IntN(30), 10+r.IntN(20)))
				if noisy {
					ext = "jpg"
					args = append(args, "-seed", strconv.FormatUint(seed+uint64(len(cases)), 10),
						"-rotate", fmt.Sprintf("%.2f", r.Float64()*4-2),
						"-attenuate", fmt.Sprintf("%.2f", 0.3+r.Float64()*0.5), "+noise", "Gaussian",
						"-blur", fmt.Sprintf("0x%.2f", 0.3+r.Float64()*0.5),
						"-quality", strconv.Itoa(50+r.IntN(21)))
				}
				out := filepath.Join(dir, name+"."+ext)
				args = append(args, out)
				if b, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
					t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, b)
				}
				img, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				cases = append(cases, EvalCase{Name: name, Category: cat, Noisy: noisy, Lines: lines, Image: img, Args: args})
			}
		}
	}
	return cases
}

func existing(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

var (
	enWords = strings.Fields(`the a quick model server reads every line of text and returns
		its words while workers start cold or warm on small machines with fast disks
		people send images from phones scanners and screens so accuracy matters more
		than speed when receipts forms and signs arrive late at night in large batches
		each request carries one picture our queue keeps order under load today`)
	enEnds   = []string{".", ".", ".", "!", "?", ";", ":"}
	zhWords  = strings.Fields(`我们 今天 模型 服务器 识别 文字 图片 每一行 快速 准确 用户 上传 发票 表格 系统 运行 数据 中心 城市 天气 学习 工作 时间 问题 方法 结果 重要 简单 部署 推理`)
	zhEnds   = []string{"。", "。", "！", "？", "；"}
	units    = []string{"kg", "km", "ms", "MB", "USD", "EUR"}
	mixWords = []string{"Ember", "ONNX", "GPU", "CPU", "OCR", "API", "HTTP", "Go", "PP-OCRv4", "Linux"}
)

// sentence draws one line of a category; every line ends in punctuation.
func sentence(r *rand.Rand, cat string) string {
	switch cat {
	case "english":
		n := 4 + r.IntN(5)
		w := make([]string, n)
		for i := range w {
			w[i] = enWords[r.IntN(len(enWords))]
		}
		w[0] = strings.ToUpper(w[0][:1]) + w[0][1:]
		if n > 4 {
			w[1+r.IntN(n-3)] += ","
		}
		return strings.Join(w, " ") + enEnds[r.IntN(len(enEnds))]
	case "numbers":
		switch r.IntN(4) {
		case 0:
			return fmt.Sprintf("Total %d.%02d, tax %d.%02d.", r.IntN(9000)+10, r.IntN(100), r.IntN(900)+1, r.IntN(100))
		case 1:
			return fmt.Sprintf("%04d-%02d-%02d %02d:%02d, room %d.", 2000+r.IntN(30), 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), 100+r.IntN(900))
		case 2:
			return fmt.Sprintf("Order %d: %d %s, %d items.", 10000+r.IntN(90000), 1+r.IntN(500), units[r.IntN(len(units))], 1+r.IntN(40))
		default:
			return fmt.Sprintf("Call %03d %04d or %03d %04d.", r.IntN(1000), r.IntN(10000), r.IntN(1000), r.IntN(10000))
		}
	case "chinese":
		n := 3 + r.IntN(4)
		var sb strings.Builder
		for i := 0; i < n; i++ {
			sb.WriteString(zhWords[r.IntN(len(zhWords))])
			if i == n/2 {
				sb.WriteString("，")
			}
		}
		return sb.String() + zhEnds[r.IntN(len(zhEnds))]
	default: // mixed
		a, b := zhWords[r.IntN(len(zhWords))], zhWords[r.IntN(len(zhWords))]
		m := mixWords[r.IntN(len(mixWords))]
		switch r.IntN(3) {
		case 0:
			return fmt.Sprintf("%s %s%s，%d %s。", m, a, b, 1+r.IntN(999), units[r.IntN(len(units))])
		case 1:
			return fmt.Sprintf("%s uses %s, %s%s %d.", m, mixWords[r.IntN(len(mixWords))], a, b, r.IntN(100))
		default:
			return fmt.Sprintf("%s%s %s %d.%d%s。", a, b, m, r.IntN(10), r.IntN(10), "倍")
		}
	}
}
