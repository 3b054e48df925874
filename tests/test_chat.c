/* engine/chat: family detection from template strings and the formatted prompts. */
#include <string.h>

#include "testutil.h"

#include "engine/chat.h"

/* Abbreviated real templates (the markers are what matters). */
static const char *const tinyllama =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
    "'<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
    "'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif "
    "%}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif "
    "%}\n{% endfor %}";
static const char *const llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
    "messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' "
    "+ content | trim + ' [/INST]' }}";
static const char *const chatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

static void test_detect(void **st)
{
    (void)st;
    assert_int_equal(chat_detect(tinyllama, strlen(tinyllama)), CHAT_ZEPHYR);
    assert_int_equal(chat_detect(llama2, strlen(llama2)), CHAT_LLAMA2);
    assert_int_equal(chat_detect(chatml, strlen(chatml)), CHAT_CHATML);
    assert_int_equal(chat_detect("{{ messages }}", 14), CHAT_NONE);
    assert_int_equal(chat_detect(NULL, 0), CHAT_NONE);
    /* a marker cut off by the length is not seen */
    assert_int_equal(chat_detect(chatml, 10), CHAT_NONE);
    assert_int_equal(chat_family_parse("zephyr"), CHAT_ZEPHYR);
    assert_int_equal(chat_family_parse("chatml"), CHAT_CHATML);
    assert_int_equal(chat_family_parse("llama2"), CHAT_LLAMA2);
    assert_int_equal(chat_family_parse("none"), CHAT_NONE);
    assert_int_equal(chat_family_parse("vicuna"), -1);
    assert_string_equal(chat_family_name(CHAT_CHATML), "chatml");
}

static void test_apply(void **st)
{
    (void)st;
    struct chat_msg m[3] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}};
    char out[512];
    size_t n = chat_apply(CHAT_ZEPHYR, m, 2, true, out, sizeof out);
    assert_string_equal(out, "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n");
    assert_int_equal(n, strlen(out));
    chat_apply(CHAT_CHATML, m, 2, true, out, sizeof out);
    assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                             "<|im_end|>\n<|im_start|>assistant\n");
    chat_apply(CHAT_LLAMA2, m, 2, true, out, sizeof out);
    assert_string_equal(out, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
    struct chat_msg m2[4] = {{"user", "A"}, {"assistant", "B"}, {"user", "C"}, {NULL, NULL}};
    chat_apply(CHAT_LLAMA2, m2, 3, true, out, sizeof out);
    assert_string_equal(out, "[INST] A [/INST] B </s><s>[INST] C [/INST]");
    chat_apply(CHAT_NONE, m, 2, true, out, sizeof out);
    assert_string_equal(out, "Be brief.\n\nHi");
    /* snprintf-like: the needed length even when the buffer is short, always terminated */
    char small[8];
    n = chat_apply(CHAT_ZEPHYR, m, 3, false, small, sizeof small);
    assert_int_equal(n, strlen("<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"
                               "Hello</s>\n"));
    assert_int_equal(strlen(small), 7);
    assert_int_equal(chat_apply(CHAT_CHATML, m, 1, false, NULL, 0),
                     strlen("<|im_start|>system\nBe brief.<|im_end|>\n"));
    assert_string_equal(chat_stop_string(CHAT_CHATML), "<|im_end|>");
    assert_null(chat_stop_string(CHAT_NONE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
