"""The world's word lists and sentence templates: what its documents and summaries are made of.

world.py holds the logic that uses them: documents, reference summaries, the oracle and the labeler.
"""

# ---------------------------------------------------------------------------------------------------
# Lexicon. Every fact is a phrase from one of these lists, and no phrase is in two lists, so the oracle
# can tell from a phrase alone which kind of fact it is.

FIRST_NAMES = """Anna Ben Clara David Elena Felix Grace Hugo Irene Jonas Karen Leo Maria Nico Olga Paul
Quinn Rosa Samuel Tara Umar Vera Walter Xenia Yusuf Zoe Adam Bianca Carlos Diana Emil Fiona George Hanna
Ivan Julia Kevin Lena Marco Nadia Oscar Petra Rafael Sofia Tomas Ursula Victor Wendy Yara Alice Bruno
Chloe Daniel Eva Frank Gina Henry Ines Jack Laura""".split()

SURNAMES = """Abbott Berg Castillo Dalton Eriksen Fischer Garcia Hartley Ito Jensen Kowalski Lindqvist
Moreau Novak Okafor Petrov Quist Rossi Sato Tanaka Ueda Varga Walsh Xu Yilmaz Zimmer Ahmed Brennan Costa
Dubois Ekberg Farrell Gallo Horvat Ivanova Janssen Keller Larsen Mendes Nakamura Olsen Quinlan Reyes
Schmidt Torres Ulrich Vogel Weber Zhang Alvarez Becker Conti Duarte Engel Ferreira Grant Holm Iqbal
Moretti Sandoval""".split()

# Invented town names, built from parts so that 160 of them stay short and pronounceable.
PLACES = [root + end for root in """Ash Birch Bram Clay Cold Dun Elm Fern Glen Hazel Holt Ivy Kings Lark
Mill Oak Pine Red Stone Thorn""".split() for end in "ford bury wick ton field mouth dale port".split()]

ROLES = """teacher, farmer, mechanic, nurse, engineer, librarian, carpenter, fisherman, pilot, mayor, chef,
architect, volunteer, student, shopkeeper, plumber, electrician, gardener, firefighter, doctor,
pharmacist, journalist, photographer, museum curator, bus driver, postal worker, police officer,
lawyer, accountant, sailor, tailor, blacksmith, beekeeper, veterinarian""".replace("\n", " ").split(", ")

# Past tenses that are also past participles, so "were {action} by" reads right in every template.
ACTIONS = """delivered donated sold bought repaired collected painted inspected ordered shipped counted
cleaned moved stored tested displayed loaded unloaded returned rented lent found restored packed
carried recovered exported imported auctioned polished photographed catalogued transported replaced
installed distributed purchased examined recycled unpacked insured labelled weighed wrapped
exhibited""".split()

# Plural, movable things, so that any action above makes sense with any of them.
OBJECTS = """bicycles, lamps, chairs, tables, pianos, violins, boats, tractors, computers, telescopes,
clocks, kettles, umbrellas, blankets, lanterns, drums, guitars, ladders, wheelbarrows, canoes, sewing
machines, printers, typewriters, radios, televisions, cameras, microscopes, bookshelves, cabinets,
mirrors, rugs, carpets, curtains, pillows, mattresses, beds, sofas, desks, stools, barrels, crates,
buckets, shovels, rakes, hammers, saws, drills, helmets, backpacks, suitcases, tents, sleeping bags,
kayaks, surfboards, skateboards, scooters, motorcycles, vans, trucks, buses, trailers, caravans,
wagons, carriages, sculptures, paintings, statues, vases, bowls, plates, teapots, jugs, baskets,
quilts, tapestries, banners, flags, posters, maps, globes, compasses, binoculars, anchors, sails, oars,
fishing rods, nets, beehives, birdhouses, greenhouses, sheds, fences, gates, windows, doors, stoves,
ovens, fridges, freezers, washing machines, heaters, fans, generators, batteries, solar panels, wind
turbines, water pumps, street lamps, traffic lights, park benches, bells, trumpets, flutes, cellos,
harps, accordions, xylophones, laptops, tablets, phones, keyboards, monitors, speakers, headphones,
microphones, projectors, robots, drones, engines, tyres, wheels, chainsaws, lawnmowers, sprinklers,
hoses, watering cans, flowerpots, toolboxes, wardrobes, cribs, strollers, wheelchairs, crutches,
stretchers, fire extinguishers, lockers, safes, trunks, chests, music boxes, rocking chairs,
armchairs, chandeliers, candlesticks, picture frames, hand carts, sledges, skis, snowboards,
easels""".replace("\n", " ").split(", ")

TIMES = """on Monday, on Tuesday, on Wednesday, on Thursday, on Friday, on Saturday, on Sunday,
in January, in February, in March, in April, in May, in June, in July, in August, in September,
in October, in November, in December, last week, last month, last weekend, yesterday, this morning,
this week, earlier this month, in the spring, in the summer, in the autumn, in the winter""".replace(
    "\n", " "
).split(", ")

# ---------------------------------------------------------------------------------------------------
# Templates. Placeholders: {name} (full name), {surname}, {role}, {a_role} ("a teacher", "an
# engineer"), {action}, {qty}, {obj}, {place}, {time}; distractor templates also use {count} (a large
# background number) and {main_surname}, {main_role}, {main_obj}, {main_place}, which point back at the
# main event. The first letter of each sentence is capitalised after filling in.

# The main event: a lead sentence, and a follow-up that gives the facts the lead left out, naming the
# actor by surname or role (as news writing does). The actor's full name is always in the lead.
MAIN_TEMPLATES = [
    ("{name}, {a_role} from {place}, {action} {qty} {obj} {time}.", ""),
    ("{time}, {a_role} named {name} {action} {qty} {obj} in {place}.", ""),
    ("In {place}, the local {role} {name} {action} {qty} {obj} {time}.", ""),
    ("{qty} {obj} were {action} in {place} {time} by {name}, {a_role}.", ""),
    ("Residents of {place} watched {time} as {name}, {a_role}, {action} {qty} {obj}.", ""),
    ("{place} {role} {name} {action} {qty} {obj} {time}.", ""),
    ("{name}, who works as {a_role}, {action} {qty} {obj} in {place} {time}.", ""),
    ("It was a busy day in {place} {time}: {name}, {a_role}, {action} {qty} {obj}.", ""),
    ("{name} {action} {qty} {obj} in {place} {time}, according to local reports.", "{surname} works as {a_role} in the area."),
    ("{name}, {a_role}, {action} {qty} {obj} {time}.", "The work took place in {place}, {surname} said."),
    ("{role} {name} {action} {obj} in {place} {time}.", "In total, {surname} {action} {qty} {obj}."),
    ("{name} {action} {qty} {obj} in {place}.", "The {role} did the work {time}, {surname} confirmed."),
    ("{time}, {name} {action} {qty} {obj}.", "{surname}, {a_role}, did the work in {place}."),
    ("{name} {action} a large number of {obj} in {place} {time}.", "The {role} said the exact number was {qty}."),
    ("{name}, {a_role}, has {action} {qty} {obj} in {place}.", "{surname} finished the job {time}."),
    ("{time}, {name} {action} {qty} {obj} at a site in {place}.", "{surname} is {a_role} by trade."),
]

# Distractor sentences: other events, quotes and background. Each one brings its own facts, several of
# the same kind as the main event's (another place, another number), which a summary must leave out.
DISTRACTOR_TEMPLATES = [
    # other events, with a full set of facts
    "Separately, {name}, {a_role}, {action} {qty} {obj} in {place} {time}, a spokesperson for the town said.",
    "In a different case, {a_role} named {name} {action} {qty} {obj} in {place} {time}.",
    "Meanwhile, {name}, {a_role} from {place}, {action} {qty} {obj} {time} with the help of friends.",
    "A similar story came from {place}, where {role} {name} {action} {qty} {obj} {time}.",
    "{qty} {obj} were also {action} in {place} {time} by {name}, {a_role} with many years of experience.",
    # other events, with some of the facts
    "{time}, {name} {action} {qty} {obj} in nearby {place}, but that was a much smaller job.",
    "{name} {action} {qty} {obj} {time}, local records show, though nobody paid much attention.",
    "In {place}, {name} {action} {qty} {obj} for a school that had asked for help.",
    "{name}, {a_role}, {action} {obj} in {place} {time} as well, for a private client.",
    "{time}, {a_role} in {place} {action} {qty} {obj} for the regional council.",
    "Officials in {place} {action} {qty} {obj} {time} as part of a separate project.",
    "Police said {qty} {obj} were reported missing in {place} {time}, and they asked for witnesses.",
    "A shipment of {qty} {obj} is expected to reach {place} {time}, according to the port authority.",
    "Only {qty} {obj} had been {action} in {place} the year before, the council said.",
    # the main actor, but facts that are not the event's
    "Earlier in the year, {main_surname} had {action} {qty} {obj} in {place} for a friend.",
    "{main_surname} previously worked as {a_role} in {place} for several years.",
    "{main_surname} came to {main_place} from {place} {years} years ago and never left.",
    "{main_surname} plans to visit {place} next, where similar work is waiting.",
    "The {main_role} said {qty} of the {main_obj} were very old and needed extra care.",
    "The {main_obj} had previously been kept in {place}, far from where they were needed.",
    # quotes
    '"This is good news for everyone in the region," said {name}, {a_role} from {place}.',
    '"We did not expect so many {main_obj}," {name}, {a_role}, told reporters after the event.',
    '"I have lived in {place} for {years} years and never seen anything like it," said {name}.',
    '{name}, {a_role} who lives in {place}, called it "a great day for the whole town".',
    '"People here really care about their {obj}," said {a_role} named {name}.',
    'Asked about the work, {name}, {a_role}, said: "It took a lot of effort, but it was worth it."',
    '"We will need {qty} more {obj} next year," said {name}, who follows the project closely.',
    "{main_surname} told reporters that the {main_role} had help from {name}, {a_role} from {place}.",
    # background
    "{place}, a quiet town by the river, has a population of about {count}.",
    "{main_place} is home to about {count} people, many of whom came to watch.",
    "The town of {place} lies {qty} kilometres away and has its own market.",
    "Local records show that {count} visitors came to {place} {time} for the annual fair.",
    "A market in {place} sells {obj} every weekend, and it is popular with visitors.",
    "{place} held a festival {time} that drew {count} visitors from across the region.",
    "The nearest {role} lives in {place}, {qty} kilometres away, which makes such work rare.",
    "The weather in {place} was mild {time}, which helped the work along.",
    "{name}, {a_role} from {place}, was not involved but followed the news with interest.",
    "Schools in {place} were closed {time} because of a storm that brought heavy rain.",
    "The council of {place} has set aside money for {qty} new {obj} over the coming years.",
    "A team of {qty} helpers from {place} joined in, bringing tools and food.",
]

# The summaries: one sentence with every key fact, copied word for word from the document.
SUMMARY_TEMPLATES = [
    "{name}, {a_role}, {action} {qty} {obj} in {place} {time}.",
    "{time}, {role} {name} {action} {qty} {obj} in {place}.",
    "In {place}, {role} {name} {action} {qty} {obj} {time}.",
    "{name} ({role}) {action} {qty} {obj} in {place} {time}.",
    "{name}, who works as {a_role}, {action} {qty} {obj} in {place} {time}.",
    "{time}, {name}, {a_role} from {place}, {action} {qty} {obj}.",
    "{qty} {obj} were {action} by {role} {name} in {place} {time}.",
    "{role} {name} {action} {qty} {obj} in {place} {time}.",
]
