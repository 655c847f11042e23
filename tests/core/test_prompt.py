from tunegate.core.prompt import PromptTemplate


class FakeTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "")


def test_render_builds_system_user_and_assistant_opening():
    t = PromptTemplate(labels=("a", "b"))
    out = t.render(FakeTokenizer(), "my card is lost")
    assert out.startswith("<system>") and out.endswith("</user><assistant>")
    assert "my card is lost" in out
    assert "a" not in t.system.split()  # labels are not listed in the prompt


def test_save_and_load_round_trip(tmp_path):
    t = PromptTemplate(system="Answer.", labels=("x", "y"))
    t.save(tmp_path)
    loaded = PromptTemplate.load(tmp_path)
    assert loaded == t
    assert loaded.template_id == t.template_id
    assert PromptTemplate(system="Other.").template_id != t.template_id
