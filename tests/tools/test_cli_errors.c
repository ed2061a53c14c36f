// test_cli_errors.c — the findings of the hostile-input probe (issue 11), each as the program meets
// it: exit 2 with one line naming the file and the field, never a crash, a silent wrong answer,
// a huge allocation before a check, raw escape codes, or an output replaced by something else.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vkp_cli_run.h"
#include "vkp_fileio.h"
#include "vkp_png.h"
#include "vkp_safetensors.h"
#include "vkp_test.h"

#define VIT VKP_FIXTURES_DIR "/vit"

static const char *tmp;   // the group's temporary folder (vkp_test_dir)

static void use_dir(void **state) { tmp = ((vkp_test_dir *)*state)->dir; }

static const char *T(const char *name) {   // tmp/name (rotating static buffers)
  static char buf[8][600];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%s/%s", tmp, name);
  return b;
}

static void write_text(const char *path, const char *text) {
  vkp_error err = {0};
  const void *chunks[1] = {text};
  size_t sizes[1] = {strlen(text)};
  if (vkp_file_write_atomic(path, chunks, sizes, 1, &err)) fail_msg("%s", err.msg);
}

static char *read_text(const char *path) {
  char *t = NULL;
  size_t n = 0;
  vkp_error err = {0};
  if (vkp_file_read_all(path, 1 << 26, &t, &n, &err)) fail_msg("%s", err.msg);
  return t;
}

static void mkdir_p(const char *path) {
  vkp_error err = {0};
  if (vkp_dir_create(path, &err)) fail_msg("%s", err.msg);
}

// Copies a safetensors file tensor by tensor; `edit` may change a tensor's dtype, shape, name.
typedef void (*tensor_edit)(const char *name, vkp_dtype *dtype, int *ndim, int64_t *shape, char *new_name);

static void copy_safetensors(const char *from, const char *to, tensor_edit edit) {
  vkp_safetensors *st;
  vkp_safetensors_writer *w;
  vkp_error err = {0};
  if (vkp_safetensors_open(from, &st, &err) || vkp_safetensors_writer_new(&w, &err)) fail_msg("%s", err.msg);
  for (size_t i = 0; i < vkp_safetensors_count(st); i++) {
    const vkp_st_tensor *t = vkp_safetensors_at(st, i);
    vkp_dtype dt = t->dtype;
    int ndim = t->ndim;
    int64_t shape[8];
    memcpy(shape, t->shape, sizeof shape);
    char name[512];
    snprintf(name, sizeof name, "%s", t->name);
    if (edit) edit(t->name, &dt, &ndim, shape, name);
    if (vkp_safetensors_writer_add(w, name, dt, ndim, shape, t->data, &err)) fail_msg("%s", err.msg);
  }
  if (vkp_safetensors_writer_save(w, to, &err)) fail_msg("%s", err.msg);
  vkp_safetensors_writer_free(w);
  vkp_safetensors_free(st);
}

// A model folder: the weights of the fixture folder `from` (linked) with its config.json edited by `sed`.
static const char *model_variant(const char *name, const char *from, const char *weights, const char *sed) {
  char cmd[2048];
  const char *dir = T(name);
  mkdir_p(dir);
  snprintf(cmd, sizeof cmd, "sed %s %s/config.json > %s/config.json && ln -sf %s/%s %s/", sed, from, dir, from, weights, dir);
  if (system(cmd)) fail_msg("%s failed", cmd);
  return dir;
}

static const char *vit_variant(const char *name, const char *sed) {
  return model_variant(name, VIT "/model", "model.safetensors", sed);
}

// ---- model sizes -----------------------------------------------------------------------------

// model.image_size for a new (randomly initialised) model: the model is built at that size. It
// used to keep model.init.image_size while the data was resized: a heap overflow (32), silently
// wrong pixels (24).
static void test_model_image_size(void **state) {
  use_dir(state);
  mkdir_p(T("px/a"));
  mkdir_p(T("px/b"));
  vkp_image *img;
  vkp_error err = {0};
  if (vkp_image_new(8, 8, 1, &img, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < 12; i++) {
    memset(img->data, i % 2 ? 200 : 20, 64);
    img->data[i] = 128;
    char p[64];
    snprintf(p, sizeof p, "px/%s/%d.png", i % 2 ? "a" : "b", i);
    if (vkp_png_write(T(p), img, NULL, 0, &err)) fail_msg("%s", err.msg);
  }
  vkp_image_free(img);
  char args[2048];
  const char *common = "--set data.test=null --set data.val_fraction=0 --set data.workers=1 --set model.init.image_size=8 "
                       "--set model.init.patch_size=4 --set model.init.num_channels=1 --set train.max_steps=2 "
                       "--set train.batch_size=4 --quiet";
  snprintf(args, sizeof args, "train --set data.train=%s --set output_dir=%s --set model.image_size=16 %s", T("px"),
           T("run16"), common);
  vkp_cli_expect(args, 0, NULL);
  char *pre = read_text(T("run16/adapter/preprocessor_config.json"));
  assert_non_null(strstr(pre, "\"height\":\t16"));
  free(pre);
  snprintf(args, sizeof args, "train --set data.train=%s --set output_dir=%s --set model.image_size=10 %s", T("px"),
           T("run10"), common);
  vkp_cli_expect(args, 2, "model.image_size 10 must be divisible by model.init.patch_size 4");
  // A new model too large for the device is refused before anything is allocated, with the limit.
  snprintf(args, sizeof args, "train --set data.train=%s --set output_dir=%s --set model.init.image_size=2048 "
           "--set model.init.patch_size=1 --set model.init.hidden_size=256 --set data.test=null --set train.max_steps=1 "
           "--quiet --set data.workers=1", T("px"), T("runbig"));
  vkp_cli_expect(args, 2, "over the device's largest allocation");
  // An integer key far outside long's range (1e66: undefined behaviour in the range check, found
  // by fuzz_json) is an error naming the key.
  vkp_cli_expect("train --set train.batch_size=1e66 --set data.train=/nonexistent", 2, "'train.batch_size' must be an integer");
}

// A config.json that does not describe its checkpoint (hidden_size 16384: it allocated and
// randomised 9.5 GB first; image_size 4096 / patch_size 1: an empty message) is named before any
// allocation.
static void test_checkpoint_shapes_first(void **state) {
  use_dir(state);
  char args[1024];
  snprintf(args, sizeof args, "info --model %s", vit_variant("big", "'s/\"hidden_size\": 48/\"hidden_size\": 16384/'"));
  struct rusage before, after;
  getrusage(RUSAGE_CHILDREN, &before);
  vkp_cli_expect(args, 2, "config.json (hidden_size 16384");
  getrusage(RUSAGE_CHILDREN, &after);
  assert_non_null(strstr(vkp_cli_output(), "'vit.embeddings.patch_embeddings.projection.weight' is (48, 3, 8, 8)"));
  if (after.ru_maxrss > 1024 * 1024)   // KiB: the program stayed small
    fail_msg("vkpeft info used %ld MiB", after.ru_maxrss / 1024);
  snprintf(args, sizeof args, "info --model %s",
           vit_variant("p1", "-e 's/\"image_size\": 32/\"image_size\": 4096/' -e 's/\"patch_size\": 8/\"patch_size\": 1/'"));
  vkp_cli_expect(args, 2, "patch_size 1");
  snprintf(args, sizeof args, "info --model %s", vit_variant("deep", "'s/\"num_hidden_layers\": 2/\"num_hidden_layers\": 40/'"));
  vkp_cli_expect(args, 2, "'vit.encoder.layer.39.attention.attention.query.weight' is missing (config.json: 40 layers)");
}

// The same for CLIP (either tower) and the diffusers UNet and VAE: a config.json with absurd sizes
// or one that does not describe its checkpoint is named (file, key, the tensor and both shapes)
// before the model is allocated.
static void expect_small_rejection(const char *dir, const char *needle, const char *tensor) {
  char args[1024];
  snprintf(args, sizeof args, "info --model %s", dir);
  struct rusage before, after;
  getrusage(RUSAGE_CHILDREN, &before);
  vkp_cli_expect(args, 2, needle);
  getrusage(RUSAGE_CHILDREN, &after);
  const char *out = vkp_cli_output();
  if (!strstr(out, "config.json") || !strstr(out, tensor) || strchr(out, '\n') != out + strlen(out) - 1)
    fail_msg("want one line naming config.json and tensor '%s', got:\n%s", tensor, out);
  if (after.ru_maxrss > 1024 * 1024) fail_msg("vkpeft %s used %ld MiB", args, after.ru_maxrss / 1024);
}

static void test_clip_diffusion_shapes_first(void **state) {
  use_dir(state);
  const char *clip = VKP_FIXTURES_DIR "/clip/model", *unet = VKP_FIXTURES_DIR "/unet/unet", *vae = VKP_FIXTURES_DIR "/unet/vae";
  const char *clip_w = "model.safetensors", *sd_w = "diffusion_pytorch_model.safetensors";
  const struct {
    const char *name, *from, *weights, *sed, *needle, *tensor;
  } cases[] = {
      // CLIP: the text tower's width (the first "hidden_size": 1.4 GB before), the vision tower's depth and image size.
      {"clip_wide", clip, clip_w, "'0,/\"hidden_size\": 32/s//\"hidden_size\": 4096/'", "hidden_size 4096",
       "text_model.embeddings.token_embedding.weight"},
      {"clip_deep", clip, clip_w, "'s/\"num_hidden_layers\": 2/\"num_hidden_layers\": 48/'", "num_hidden_layers 48",
       "encoder.layers.47.self_attn.q_proj.weight' is missing"},
      {"clip_big_image", clip, clip_w, "'s/\"image_size\": 32/\"image_size\": 4096/'", "image_size 4096",
       "vision_model.embeddings.position_embedding.weight"},
      // UNet: a block 8192 channels wide (2.4 GB per 3x3 convolution: exit 3 before), more layers, another text width.
      {"unet_wide", unet, sd_w, "'12s/64/8192/'", "block_out_channels", "down_blocks.1.resnets.0.conv1.weight"},
      {"unet_deep", unet, sd_w, "'s/\"layers_per_block\": 1/\"layers_per_block\": 8/'", "layers_per_block",
       "down_blocks.0.resnets.7.conv1.weight' is missing"},
      {"unet_cross", unet, sd_w, "'s/\"cross_attention_dim\": 32/\"cross_attention_dim\": 768/'", "cross_attention_dim 768",
       "attn2.to_k.weight"},
      // VAE: a first block 16384 wide (9.7 GB), another latent width.
      {"vae_wide", vae, sd_w, "'6s/16/16384/'", "block_out_channels", "encoder.conv_in.weight"},
      {"vae_latent", vae, sd_w, "'s/\"latent_channels\": 4/\"latent_channels\": 64/'", "latent_channels 64", "encoder.conv_out.weight"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    expect_small_rejection(model_variant(cases[i].name, cases[i].from, cases[i].weights, cases[i].sed), cases[i].needle,
                           cases[i].tensor);
}

// ---- adapters and inputs -----------------------------------------------------------------------

static void transpose_lora_a(const char *name, vkp_dtype *dt, int *ndim, int64_t *shape, char *new_name) {
  if (!strcmp(name, "base_model.model.vit.layers.0.attention.q_proj.lora_A.weight")) {
    int64_t t = shape[0];
    shape[0] = shape[1];
    shape[1] = t;
  }
}

static void lora_a_as_i32(const char *name, vkp_dtype *dt, int *ndim, int64_t *shape, char *new_name) {
  if (!strcmp(name, "base_model.model.vit.layers.0.attention.q_proj.lora_A.weight")) *dt = VKP_DTYPE_I32;
}

static void escape_codes(const char *name, vkp_dtype *dt, int *ndim, int64_t *shape, char *new_name) {
  if (!strcmp(name, "classifier.bias")) strcpy(new_name, "evil\x1b[31mRED\x1b]0;title\x07\xc2\x9b" "2J");
}

static const char *adapter_variant(const char *name, tensor_edit edit) {
  char cmd[1024], st[700];
  const char *dir = T(name);
  mkdir_p(dir);
  snprintf(cmd, sizeof cmd, "cp %s/adapters/lora/adapter_config.json %s/", VIT, dir);
  if (system(cmd)) fail_msg("%s failed", cmd);
  snprintf(st, sizeof st, "%s/adapter_model.safetensors", dir);
  char from[400];
  snprintf(from, sizeof from, "%s/adapters/lora/adapter_model.safetensors", VIT);
  copy_safetensors(from, st, edit);
  return dir;
}

static void test_adapter_tensors(void **state) {
  use_dir(state);
  char args[1024];
  snprintf(args, sizeof args, "info --model %s/model --adapter %s", VIT, adapter_variant("transposed", transpose_lora_a));
  vkp_cli_expect(args, 2, "has shape (48, 4), the model's 'vit.layers.0.attention.q_proj.lora_A.weight' needs (4, 48)");
  snprintf(args, sizeof args, "info --model %s/model --adapter %s", VIT, adapter_variant("i32", lora_a_as_i32));
  vkp_cli_expect(args, 2, "has dtype I32; adapter weights must be F32, F16 or BF16");
}

// forward --loss: labels outside [0, classes) or not integers are refused (they gave loss 0).
static void test_forward_labels(void **state) {
  use_dir(state);
  static const struct { const char *name; float labels[3]; const char *msg; } cases[] = {
      {"big", {3, 7, 2}, "labels[1] = 7 is outside [0, 5)"},
      {"neg", {3, -1, 2}, "labels[1] = -1 is outside [0, 5)"},
      {"nan", {3, NAN, 2}, "entry 1 is nan, not an integer"},
  };
  vkp_safetensors *io;
  vkp_error err = {0};
  if (vkp_safetensors_open(VIT "/io.safetensors", &io, &err)) fail_msg("%s", err.msg);
  const vkp_st_tensor *px = vkp_safetensors_find(io, "pixel_values");
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    vkp_safetensors_writer *w;
    char path[64], args[1024];
    snprintf(path, sizeof path, "labels_%s.safetensors", cases[i].name);
    if (vkp_safetensors_writer_new(&w, &err) ||
        vkp_safetensors_writer_add(w, "pixel_values", px->dtype, px->ndim, px->shape, px->data, &err) ||
        vkp_safetensors_writer_add_f32(w, "labels", VKP_DTYPE_F32, 1, (int64_t[]){3}, cases[i].labels, &err) ||
        vkp_safetensors_writer_save(w, T(path), &err))
      fail_msg("%s", err.msg);
    vkp_safetensors_writer_free(w);
    snprintf(args, sizeof args, "forward --model %s/model --inputs %s --output %s --loss", VIT, T(path), T("fw.safetensors"));
    vkp_cli_expect(args, 2, cases[i].msg);
  }
  vkp_safetensors_free(io);
}

// Names from a file are printed with their control characters escaped.
static void test_info_escapes(void **state) {
  use_dir(state);
  char args[1024];
  copy_safetensors(VIT "/model/model.safetensors", T("evil.safetensors"), escape_codes);
  snprintf(args, sizeof args, "info %s", T("evil.safetensors"));
  vkp_cli_expect(args, 0, "evil\\x1b[31mRED\\x1b]0;title\\x07\\u009b2J");
  const char *out = vkp_cli_output();
  assert_null(strchr(out, 0x1b));
  assert_null(strchr(out, 0x07));
  assert_null(strstr(out, "\xc2\x9b"));
  // PNG text chunks (a generated image's `parameters`): escaped the same, newlines kept.
  uint8_t px[12] = {0};
  vkp_image img = {.width = 2, .height = 2, .channels = 3, .data = px};
  vkp_png_text txt = {"parameters", "a cat\x1b[2J\nSteps: 20"};
  vkp_error err = {0};
  assert_int_equal(vkp_png_write(T("evil.png"), &img, &txt, 1, &err), VKP_OK);
  snprintf(args, sizeof args, "info %s", T("evil.png"));
  vkp_cli_expect(args, 0, "a cat\\x1b[2J\nSteps: 20");
  assert_null(strchr(vkp_cli_output(), 0x1b));
}

static void test_unsupported_exit_2(void **state) {
  use_dir(state);
  char args[1024];
  mkdir_p(T("bert"));
  write_text(T("bert/config.json"), "{\"model_type\": \"bert\"}");
  static const char *const cmds[] = {"info --model %s", "export --model %s --merge --output %s/../bert-out",
                                     "forward --model %s --inputs " VIT "/io.safetensors --output %s/../o.safetensors"};
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    snprintf(args, sizeof args, cmds[i], T("bert"), T("bert"));
    vkp_cli_expect(args, 2, "unsupported model: bert");
  }
}

// ---- outputs ------------------------------------------------------------------------------------

// --output that is a symbolic link or a FIFO is refused and left as it was (it used to be replaced
// by a regular file); temporary files of killed writes of the same output are removed.
static void test_output_targets(void **state) {
  use_dir(state);
  char args[1024];
  const char *real = T("real.safetensors"), *link = T("link.safetensors"), *fifo = T("fifo.safetensors");
  write_text(real, "keep me");
  assert_int_equal(symlink(real, link), 0);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  const char *fmt = "forward --model " VIT "/model --inputs " VIT "/io.safetensors --output %s";
  snprintf(args, sizeof args, fmt, link);
  vkp_cli_expect(args, 2, "is not a regular file (a symbolic link)");
  snprintf(args, sizeof args, fmt, fifo);
  vkp_cli_expect(args, 2, "is not a regular file (a FIFO)");
  struct stat sb;
  assert_int_equal(lstat(link, &sb), 0);
  assert_true(S_ISLNK(sb.st_mode));
  assert_int_equal(lstat(fifo, &sb), 0);
  assert_true(S_ISFIFO(sb.st_mode));
  char *t = read_text(real);
  assert_string_equal(t, "keep me");
  free(t);
  // OUT.tmp.XXXXXXXX left by a killed write of OUT is gone after the next write of OUT.
  const char *out = T("out.safetensors"), *stale = T("out.safetensors.tmp.5ca1ab1e");
  write_text(stale, "half a file");
  snprintf(args, sizeof args, fmt, out);
  vkp_cli_expect(args, 0, NULL);
  assert_int_equal(access(out, F_OK), 0);
  assert_int_equal(access(stale, F_OK), -1);
}

static char *export_signature(const char *dir) {   // the folder's files and their checksums
  char cmd[700];
  snprintf(cmd, sizeof cmd, "cd %s && ls -A && cksum * 2>&1", dir);
  FILE *p = popen(cmd, "r");
  size_t cap = 1 << 22, n = 0;
  char *buf = malloc(cap);
  while (p && n < cap - 1 && !feof(p)) n += fread(buf + n, 1, cap - 1 - n, p);
  buf[n] = '\0';
  if (p) pclose(p);
  return buf;
}

static int count_tmp(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "ls -A %s | grep -c '\\.tmp\\.'", tmp);
  FILE *p = popen(cmd, "r");
  int n = -1;
  if (!p || fscanf(p, "%d", &n) != 1) n = -1;
  if (p) pclose(p);
  return n;
}

// export writes the whole folder or nothing: a folder it cannot fully write never replaces a
// good one, a killed export leaves the old or the new folder (never a mix), and what it refuses
// (a file, a symbolic link, a folder of other files) is left alone.
static void test_export_atomic(void **state) {
  use_dir(state);
  char args[1024];
  const char *out = T("export");
  const char *fmt = "export --model " VIT "/model --adapter " VIT "/adapters/%s --merge --output %s";
  snprintf(args, sizeof args, fmt, "lora", out);
  vkp_cli_expect(args, 0, "exported");
  char *lora = export_signature(out);
  snprintf(args, sizeof args, fmt, "ia3", out);
  vkp_cli_expect(args, 0, "exported");
  char *ia3 = export_signature(out);
  assert_string_not_equal(lora, ia3);
  // A folder whose config.json is in the way (a directory): before, model.safetensors was
  // replaced and config.json failed, leaving a mixed folder; now the new folder replaces it whole.
  char cfgdir[700];
  snprintf(cfgdir, sizeof cfgdir, "%s/config.json", out);
  assert_int_equal(unlink(cfgdir), 0);
  mkdir_p(cfgdir);
  snprintf(args, sizeof args, fmt, "lora", out);
  vkp_cli_expect(args, 0, "exported");
  char *again = export_signature(out);
  assert_string_equal(again, lora);
  free(again);
  assert_int_equal(count_tmp(), 0);
  // Killed at different moments: always the old or the new folder, complete.
  for (int round = 0; round < 5; round++) {
    snprintf(args, sizeof args, "export --model %s/model --adapter %s/adapters/%s --merge --output %s", VIT, VIT,
             round % 2 ? "lora" : "ia3", out);
    pid_t pid = vkp_cli_spawn(args);
    struct timespec ts = {0, (150 + 120 * round) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char *now = export_signature(out);
    if (strcmp(now, lora) && strcmp(now, ia3)) fail_msg("round %d: the folder is neither export", round);
    free(now);
  }
  snprintf(args, sizeof args, fmt, "ia3", out);
  vkp_cli_expect(args, 0, "exported");
  assert_int_equal(count_tmp(), 0);   // killed exports' temporary folders are cleaned up
  // Refused: a regular file, a symbolic link, a folder of other files.
  write_text(T("afile"), "x");
  snprintf(args, sizeof args, fmt, "lora", T("afile"));
  vkp_cli_expect(args, 2, "not a folder");
  assert_int_equal(symlink(out, T("alink")), 0);
  snprintf(args, sizeof args, fmt, "lora", T("alink"));
  vkp_cli_expect(args, 2, "symbolic link");
  mkdir_p(T("mine"));
  write_text(T("mine/notes.txt"), "precious");
  snprintf(args, sizeof args, fmt, "lora", T("mine"));
  vkp_cli_expect(args, 2, "is not a model folder");
  char *t = read_text(T("mine/notes.txt"));
  assert_string_equal(t, "precious");
  free(t);
  free(lora);
  free(ia3);
}

// predict checks an image's declared size before decoding it, against a limit it names.
static void test_predict_image_limit(void **state) {
  use_dir(state);
  vkp_image *img;
  vkp_error err = {0};
  if (vkp_image_new(32, 32, 3, &img, &err) || vkp_png_write(T("cat.png"), img, NULL, 0, &err)) fail_msg("%s", err.msg);
  vkp_image_free(img);
  char args[1024];
  snprintf(args, sizeof args, "predict --model %s/model %s", VIT, T("cat.png"));
  vkp_cli_expect(args, 0, "LABEL_");
  setenv("VKPEFT_MAX_IMAGE_PIXELS", "1000", 1);
  vkp_cli_expect(args, 2, "cat.png: the image declares 32x32 pixels, over the decoding limit of 1000 pixels");
  assert_non_null(strstr(vkp_cli_output(), "VKPEFT_MAX_IMAGE_PIXELS"));
  unsetenv("VKPEFT_MAX_IMAGE_PIXELS");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_image_size),  cmocka_unit_test(test_checkpoint_shapes_first),
      cmocka_unit_test(test_adapter_tensors),   cmocka_unit_test(test_forward_labels),
      cmocka_unit_test(test_info_escapes),      cmocka_unit_test(test_unsupported_exit_2),
      cmocka_unit_test(test_output_targets),    cmocka_unit_test(test_export_atomic),
      cmocka_unit_test(test_predict_image_limit), cmocka_unit_test(test_clip_diffusion_shapes_first),
  };
  return cmocka_run_group_tests(tests, vkp_test_dir_setup, vkp_test_dir_teardown);
}
