"""Function words the grounding check does not count, per language, as written.

A sentence's content terms are its other words, so that "the", "und", "для" or "και" do
not make an unsupported sentence look supported. Only words of 3+ letters matter (shorter
ones are never terms). ``terms`` folds these lists as it folds text (case, accents), so
they are written here as the languages write them. Words that are also English content
words, as written or once folded (German "war", "hat", "für" and "über", folded "fur" and
"uber"; French "son", "plus", "pour"; Spanish "con", "sin", "hay"; Italian "come", "non";
Dutch "van", "door", "met"; Portuguese "com", "dos", "são"), are left out: every list
applies to every text, whatever its language. German "die" and "den" are kept.
"""

from __future__ import annotations

ENGLISH = """
    about above after again against all also although among and another any are aren
    because been before being below between both but can cannot could couldn did didn does
    doesn doing don done down during each either else etc ever every few for from further
    had hadn has hasn have haven having her here hers herself him himself his how however
    into isn its itself just least less let like made make many may might more most much
    must neither nor not now off once one only other our ours ourselves out over own per
    quite rather same shall she should shouldn since some such than that the their theirs
    them themselves then there these they this those though through thus too under until
    upon very via was wasn were weren what when where whether which while who whom whose
    why will with within without won would wouldn yet you your yours yourself yourselves
"""

GERMAN = """
    aber alle allen aller alles als auch auf aus bei beim bereits bis bitte da damit
    dann dass das dem den denn der des dessen die dies diese diesem diesen dieser dieses
    doch dort durch ein eine einem einen einer eines etwa euch gegen habe haben hatte
    hatten hier ihm ihn ihnen ihr ihre ihrem ihren ihrer innerhalb jede jedem jeden
    jeder jedes kann kein keine keinem keinen keiner können könnte mehr mit muss müssen
    nach nicht noch nur oder ohne sehr sein seine seinem seinen seiner sich sie sind
    soll sollen sollte sowie um und uns unser unsere unter vom von vor während waren
    weil weitere weiteren wenn werden wie wir wird wurde wurden zum zur zwischen
"""

FRENCH = """
    ainsi après au aussi autre autres aux avant avec avoir cela celle celles celui ces
    cet cette ceux chez comme dans depuis des donc dont elle elles entre est et été être
    fait leur leurs lorsque mais mes nos notre nous ont par pas pendant peut peuvent
    quand que quel quelle quels qui quoi sans selon ses sont sous sur tous toute toutes
    très une vers vos votre vous
"""

SPANISH = """
    antes aquel aquella aunque cada como cual cuales cuando del desde donde durante ella
    ellas ello ellos entre esa ese eso esta está están estas este esto estos fue hasta
    las les los más mismo muy nos otra otras otro otros para pero poco por porque puede
    pueden qué que según ser sobre también toda todas todos tras una uno unos unas usted
    ustedes
"""

ITALIAN = """
    agli alla alle allo anche ancora che cosa cui dal dalla dalle degli dei del della
    delle dello dopo essere fra gli già hanno lei loro lui molto nei nel nella nelle noi
    per più può possono prima quale quando quella quelle quelli quello questa queste
    questi questo sono stato sua sue sui sul sulla suo suoi tra una uno voi
"""

PORTUGUESE = """
    antes aos após aquele aquela aquilo como das dele deles depois desde ela elas ele
    eles entre essa esse esta está estão este isso isto mais mas muito não nas nos onde
    para pela pelas pelo pelos pode podem por porque qual quando que seja sem seu seus
    sobre sua suas também tem têm uma umas uns você vocês
"""

DUTCH = """
    aan alle als bij binnen dat deze die dit een geen haar heeft hebben het hij hun
    jullie kan kunnen maar meer moet moeten naar niet nog ons onze ook uit voor wat wel
    werd wij wordt worden zal zich zij zijn zou zullen
"""

RUSSIAN = """
    без более будет будут был была были было быть вам вас ваш ваша ваше ваши вашего
    вашей весь все всё всего всех вот где даже для его ее её если есть еще ещё или как
    когда кто либо между менее мне может можете можно могут нам нас наш наша наши нет
    нужно однако они оно очень перед после потому поэтому при про свой свои своих себе
    себя так также там тем того тоже той только том тот тут уже чем чего через что чтобы
    это этого этой этом эти этих этот эта который которая которое которые которых
    которого
"""

UKRAINIAN = """
    або але вам вас ваш ваша він вона вони воно для його коли між можна може нам нас наш
    після перед потрібно про також тому цей цих цього через що щоб які який яка яке якщо
"""

GREEK = """
    αλλά από αυτά αυτή αυτής αυτό αυτοί αυτός αυτού αυτές αυτών για δεν εάν είμαστε
    είναι είστε ένα ένας επίσης έχει έχετε έχουν ήταν και κατά μας μέσα μέσω μετά μην
    μια μιας μόνο μπορεί μπορείτε μπορούν ενός οποία οποίες οποίο οποίοι οποίος όπως
    όταν ότι πιο πολύ που πριν πως πώς σας στα στη στην στις στο στον στους στων της την
    τις τον του τους των χωρίς
"""

LANGUAGES: dict[str, str] = {
    "en": ENGLISH,
    "de": GERMAN,
    "fr": FRENCH,
    "es": SPANISH,
    "it": ITALIAN,
    "pt": PORTUGUESE,
    "nl": DUTCH,
    "ru": RUSSIAN,
    "uk": UKRAINIAN,
    "el": GREEK,
}
