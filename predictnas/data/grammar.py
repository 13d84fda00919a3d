"""The command grammar of the default corpus: 24 voice-assistant intents with slots, spelled out in words.

Contract:

* ``INTENTS`` is the stable, ordered tuple of the 24 intent labels; an intent's index in it is its class id.
* :func:`draw_commands` returns ``(text, intent)`` pairs and depends only on the generator it is given.
* Every ``text`` is a normalised transcript (:func:`predictnas.data.text.normalize`: lowercase ``a-z``,
  space and apostrophe, the CTC vocabulary, single spaces). Numbers and times are words.
* :func:`spoken_form` is what the synthesizer reads: the transcript with final punctuation for intonation,
  so that the audio says exactly the words of the transcript.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from .text import normalize

# Carrier phrasings per intent; {slot} names a filler of _SLOTS. Dict order is the stable INTENTS order.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "lights_on": (
        "turn on the {room} lights", "turn on the lights in the {room}", "switch on the {room} light",
        "lights on in the {room}", "turn the lights on", "can you turn on the {room} lights",
        "put the lights on in the {room}",
    ),
    "lights_off": (
        "turn off the {room} lights", "turn off the lights in the {room}", "switch off the {room} light",
        "lights off in the {room}", "turn the lights off", "kill the lights in the {room}",
    ),
    "set_brightness": (
        "set the {room} lights to {percent}", "dim the {room} lights to {percent}",
        "set the brightness to {percent}", "change the {room} light brightness to {percent}",
        "brighten the lights in the {room} to {percent}", "make the {room} lights {percent}",
    ),
    "set_thermostat": (
        "set the thermostat to {temperature}", "set the temperature to {temperature}",
        "make it {temperature} in the {room}", "change the heating to {temperature}",
        "turn the heat up to {temperature}", "cool the {room} down to {temperature}",
    ),
    "get_temperature": (
        "what's the temperature in the {room}", "how warm is it in the {room}",
        "what is the thermostat set to", "how cold is it inside", "what's the temperature inside",
        "is it warm in the {room}",
    ),
    "set_timer": (
        "set a timer for {duration}", "start a timer for {duration}", "timer for {duration}",
        "set a {food} timer for {duration}", "remind me in {duration}", "count down from {duration}",
    ),
    "cancel_timer": (
        "cancel the timer", "cancel my {food} timer", "stop the timer", "turn off the timer",
        "cancel all timers", "stop the {food} timer", "never mind the timer",
    ),
    "set_alarm": (
        "set an alarm for {time}", "wake me up at {time}", "set my alarm for {time}", "alarm at {time}",
        "i need an alarm at {time}", "wake me up {day} at {time}",
    ),
    "play_music": (
        "play {music}", "play {music} on the {speaker}", "put on {music}", "i want to listen to {music}",
        "can you play {music}", "start playing {music} in the {room}", "play {song}",
    ),
    "pause_music": (
        "pause the music", "pause", "stop the music", "pause playback", "hold on pause the song",
        "stop playing", "pause the {speaker}",
    ),
    "next_track": (
        "next song", "skip this song", "play the next track", "skip", "skip to the next one",
        "next track", "go to the next song",
    ),
    "volume_up": (
        "turn it up", "volume up", "louder", "turn up the volume", "make it louder",
        "increase the volume on the {speaker}", "turn the music up a bit",
    ),
    "volume_down": (
        "turn it down", "volume down", "quieter", "turn down the volume", "make it quieter",
        "lower the volume on the {speaker}", "turn the music down a little",
    ),
    "set_volume": (
        "set the volume to {level}", "volume {level}", "change the volume to {level}",
        "set the {speaker} volume to {level}", "put the volume at {level}",
    ),
    "call_contact": (
        "call {name}", "phone {name}", "give {name} a call", "dial {name}", "call {name} on speaker",
        "ring {name}", "can you call {name} for me",
    ),
    "send_message": (
        "send a message to {name} saying {message}", "text {name} {message}", "tell {name} {message}",
        "send {name} a text saying {message}", "message {name} {message}",
    ),
    "get_weather": (
        "what's the weather like in {city}", "what's the weather {day}", "will it rain {day}",
        "do i need an umbrella {day}", "how's the weather in {city} {day}", "what's the forecast for {day}",
        "is it going to snow {day}", "how hot will it be {day}",
    ),
    "get_time": (
        "what time is it", "what's the time", "tell me the time", "what time is it in {city}",
        "do you have the time", "what's the time in {city} right now", "what time is it now",
    ),
    "add_to_list": (
        "add {item} to my shopping list", "put {item} on the {list}", "add {item} to the {list}",
        "remember to buy {item}", "put {item} on my {list}", "we need {item} add it to the list",
    ),
    "read_list": (
        "what's on my {list}", "read my {list}", "read me the {list}", "what do i need from the store",
        "tell me what's on the {list}", "what's on the {list}",
    ),
    "lock_door": (
        "lock the {door}", "lock all the doors", "make sure the {door} is locked", "lock up the house",
        "please lock the {door}", "lock the {door} now",
    ),
    "unlock_door": (
        "unlock the {door}", "unlock the {door} for {name}", "let me in unlock the {door}",
        "unlock the house", "please unlock the {door}", "open the lock on the {door}",
    ),
    "open_blinds": (
        "open the blinds", "open the {room} blinds", "raise the blinds in the {room}", "open the curtains",
        "let some light in", "open the shades in the {room}", "pull up the blinds",
    ),
    "close_blinds": (
        "close the blinds", "close the {room} blinds", "lower the blinds in the {room}", "close the curtains",
        "draw the curtains", "shut the blinds in the {room}", "pull down the shades",
    ),
}
INTENTS: tuple[str, ...] = tuple(_TEMPLATES)

_ROOMS = ("kitchen", "living room", "bedroom", "bathroom", "office", "hallway", "garage", "dining room",
          "basement", "kid's room", "guest room", "porch", "attic", "nursery", "laundry room", "study")
_SPEAKERS = ("speaker", "kitchen speaker", "living room speaker", "bedroom speaker", "television",
             "sound bar", "radio")
_NAMES = ("mom", "dad", "grandma", "grandpa", "sarah", "john", "emma", "david", "lisa", "michael", "anna",
          "james", "olivia", "peter", "maria", "daniel", "grace", "tom", "kate", "alex", "sophia", "ben",
          "lucy", "mark", "rachel", "steve", "jenny", "chris", "laura", "doctor smith", "the office")
_MESSAGES = ("i'm on my way", "i'll be late", "i'm running ten minutes late", "see you soon", "call me back",
             "dinner is ready", "don't forget the milk", "happy birthday", "i'm home", "good night",
             "thanks so much", "can you pick me up", "the meeting moved to three", "where are you",
             "i love you", "we're out of coffee", "let's meet at the station")
_MUSIC = ("some jazz", "classical music", "rock music", "the beatles", "queen", "abba", "taylor swift",
          "miles davis", "mozart", "beethoven", "my workout playlist", "relaxing music", "the top hits",
          "country music", "hip hop", "the radio", "something upbeat", "my favorite songs", "some blues",
          "the rolling stones", "piano music")
_SONGS = ("yesterday by the beatles", "bohemian rhapsody by queen", "dancing queen by abba", "hey jude",
          "let it be", "imagine by john lennon", "hotel california", "thriller by michael jackson",
          "take five", "the four seasons", "moonlight sonata", "shake it off", "wonderwall", "purple rain")
_CITIES = ("london", "paris", "new york", "boston", "chicago", "tokyo", "berlin", "madrid", "seattle",
           "denver", "dublin", "sydney", "toronto", "rome", "miami", "austin", "vienna", "oslo")
_DAYS = ("today", "tonight", "tomorrow", "this weekend", "this afternoon", "this evening", "on monday",
         "on tuesday", "on wednesday", "on thursday", "on friday", "on saturday", "on sunday")
_ITEMS = ("milk", "eggs", "bread", "coffee", "apples", "bananas", "butter", "rice", "batteries",
          "paper towels", "dish soap", "cheese", "tomatoes", "orange juice", "chicken", "pasta", "yogurt",
          "carrots", "onions", "dog food", "light bulbs", "toothpaste")
_LISTS = ("shopping list", "grocery list", "to do list", "packing list", "list")
_DOORS = ("front door", "back door", "garage door", "side door", "patio door")
_FOODS = ("pasta", "pizza", "egg", "rice", "cookie", "oven", "tea", "laundry")
_QUESTION_WORDS = frozenset({"what", "what's", "how", "how's", "is", "will", "do", "does", "when", "where"})

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """Spell ``0 <= n < 10000`` in words: 42 -> "forty two", 105 -> "one hundred and five"."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_words supports 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    joiner = " and " if 0 < rest < 100 else " "
    return _ONES[n // 1000] + " thousand" + ("" if rest == 0 else joiner + number_words(rest))


def spoken_form(text: str) -> str:
    """The synthesizer's input for a transcript: a question mark after questions, a full stop otherwise."""
    return text + ("?" if text.split(" ", 1)[0] in _QUESTION_WORDS else ".")


def _pick(options: tuple[str, ...]) -> Callable[[np.random.Generator], str]:
    return lambda rng: options[rng.integers(len(options))]


def _percent(rng: np.random.Generator) -> str:
    return number_words(int(rng.integers(1, 21)) * 5) + " percent"


def _temperature(rng: np.random.Generator) -> str:
    # Fahrenheit-like or Celsius-like set points, both common on thermostats.
    value = int(rng.integers(60, 80)) if rng.random() < 0.5 else int(rng.integers(16, 27))
    return number_words(value) + (" degrees" if rng.random() < 0.8 else "")


def _duration(rng: np.random.Generator) -> str:
    kind = rng.integers(6)
    if kind == 0:
        n = int(rng.integers(1, 61))
        return number_words(n) + (" minute" if n == 1 else " minutes")
    if kind == 1:
        return number_words(int(rng.integers(2, 19)) * 5) + " seconds"
    if kind == 2:
        n = int(rng.integers(1, 4))
        return number_words(n) + (" hour" if n == 1 else " hours")
    if kind == 3:
        return ("half an hour", "an hour", "an hour and a half", "a minute", "a few minutes")[rng.integers(5)]
    if kind == 4:
        return number_words(int(rng.integers(2, 10))) + " minutes and thirty seconds"
    return number_words(int(rng.integers(1, 4)) * 15) + " minutes"


def _time(rng: np.random.Generator) -> str:
    hour = number_words(int(rng.integers(1, 13)))
    kind = rng.integers(7)
    if kind == 0:
        clock = hour + " o'clock"
    elif kind == 1:
        minute = int(rng.integers(1, 60))
        clock = hour + (" oh " if minute < 10 else " ") + number_words(minute)
    elif kind == 2:
        clock = ("half past ", "quarter past ", "quarter to ")[rng.integers(3)] + hour
    elif kind == 3:
        return ("noon", "midnight")[rng.integers(2)]
    else:
        clock = hour + " " + ("fifteen", "thirty", "forty five", "twenty")[rng.integers(4)]
    suffix = ("", "", " a m", " p m", " in the morning", " in the evening", " tonight")[rng.integers(7)]
    return clock + suffix


def _level(rng: np.random.Generator) -> str:
    return number_words(int(rng.integers(1, 11))) if rng.random() < 0.6 else _percent(rng)


_SLOTS: dict[str, Callable[[np.random.Generator], str]] = {
    "room": _pick(_ROOMS), "speaker": _pick(_SPEAKERS), "name": _pick(_NAMES), "message": _pick(_MESSAGES),
    "music": _pick(_MUSIC), "song": _pick(_SONGS), "city": _pick(_CITIES), "day": _pick(_DAYS),
    "item": _pick(_ITEMS), "list": _pick(_LISTS), "door": _pick(_DOORS), "food": _pick(_FOODS),
    "percent": _percent, "temperature": _temperature, "duration": _duration, "time": _time, "level": _level,
}
_SLOT_RE = re.compile(r"\{(\w+)\}")


def _render(template: str, rng: np.random.Generator) -> str:
    text = _SLOT_RE.sub(lambda m: _SLOTS[m.group(1)](rng), template)
    # Imperatives sometimes get a politeness word: real commands vary at the edges too.
    if text.split(" ", 1)[0] not in _QUESTION_WORDS and "please" not in text:
        u = rng.random()
        if u < 0.08:
            text = "please " + text
        elif u < 0.16:
            text = text + " please"
        elif u < 0.20:
            text = "okay " + text
    return normalize(text)


def draw_commands(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """Draw ``n`` ``(text, intent)`` pairs: the intent uniformly from ``INTENTS``, then one of its
    phrasings uniformly, then every slot. Deterministic given the generator's state."""
    out = []
    for intent_index in rng.integers(len(INTENTS), size=n):
        intent = INTENTS[intent_index]
        templates = _TEMPLATES[intent]
        out.append((_render(templates[rng.integers(len(templates))], rng), intent))
    return out
